/* GAP Mini App — plain JS, no build step.
 *
 * Trust model: the server owns every rule (deadlines, scoring, idempotency);
 * this file only displays state and sends what the player did. All player and
 * model text goes into the DOM via textContent, never as HTML.
 *
 * Timer: the countdown uses the server's `seconds_left` and this device's
 * monotonic clock (performance.now) taken when the response arrived, so a
 * wrong device clock (skew) or a reload never changes the remaining time.
 */
(function () {
  'use strict';

  var cfg = {};
  try { cfg = JSON.parse(document.body.getAttribute('data-config') || '{}'); } catch (e) { cfg = {}; }
  var MAX_Q = cfg.maxQuestion || 300;
  var MAX_C = cfg.maxCorrection || 200;
  var TG_WAIT_MS = 2500;           // how long to wait for Telegram's script when the URL has no initData
  var TIMEUP_SHOW_MS = 1400;       // how long "Time's up" stays before the next image

  // ------------------------------------------------------------------ language
  // The server renders the page in one language and hands the JS its messages
  // (from the same gettext catalogue, game/locales) in data-config; `_` and
  // `ngettext` are what `pybabel extract` looks for in this file.
  var L = cfg.i18n || { lang: 'en', messages: {}, plurals: {} };
  function fill(text, params) {
    return params ? text.replace(/\{(\w+)\}/g, function (m, k) { return k in params ? String(params[k]) : m; }) : text;
  }
  function _(msgid, params) { return fill(L.messages[msgid] || msgid, params); }
  function ngettext(singular, plural, n, params) {
    var forms = L.plurals[singular], text;
    if (forms) {
      var category = 'other';
      try { category = new Intl.PluralRules(L.lang).select(n); } catch (e) { /* very old webview */ }
      text = forms[category] || forms.other;
    } else text = n === 1 ? singular : plural;
    var all = { n: n };
    for (var k in (params || {})) all[k] = params[k];
    return fill(text, all);
  }

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  // ------------------------------------------------------------------ ids
  function newRequestId() {
    if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join('');
  }

  // ------------------------------------------------------------------ storage (may be unavailable)
  function store(kind, key, value) {
    try { (kind === 'local' ? localStorage : sessionStorage).setItem(key, value); } catch (e) { /* private mode */ }
  }
  function load(kind, key) {
    try { return (kind === 'local' ? localStorage : sessionStorage).getItem(key); } catch (e) { return null; }
  }

  // ------------------------------------------------------------------ Telegram
  var tg = null;          // window.Telegram.WebApp once the script has loaded
  var inTelegram = false; // running inside a Telegram client (not just the script loaded in a browser)
  var tgCallbacks = [];

  function hashParams() {
    var h = location.hash ? location.hash.slice(1) : '';
    return new URLSearchParams(h);
  }

  function initDataFromUrl() {
    var fromHash = hashParams().get('tgWebAppData');
    if (fromHash) return fromHash;
    var q = new URLSearchParams(location.search);
    return q.get('tgWebAppData') || q.get('initData') || '';
  }

  function readInitData() {
    if (tg && tg.initData) return tg.initData;
    var data = initDataFromUrl();
    if (data) { store('session', 'gap.initData', data); return data; }
    return load('session', 'gap.initData') || '';
  }

  function isDarkColor(hex) {
    var m = /^#?([0-9a-f]{6})$/i.exec(hex || '');
    if (!m) return null;
    var n = parseInt(m[1], 16);
    var lum = 0.2126 * ((n >> 16) & 255) + 0.7152 * ((n >> 8) & 255) + 0.0722 * (n & 255);
    return lum < 128;
  }

  function applyTheme(params, scheme) {
    if (!params) return;
    var root = document.documentElement;
    Object.keys(params).forEach(function (key) {
      var v = params[key];
      if (typeof v === 'string' && /^#[0-9a-f]{3,8}$/i.test(v)) {
        root.style.setProperty('--tg-theme-' + key.replace(/_/g, '-'), v);
      }
    });
    var dark = scheme ? scheme === 'dark' : isDarkColor(params.bg_color);
    if (dark !== null && dark !== undefined) {
      root.classList.toggle('tg-dark', !!dark);
      root.classList.toggle('tg-light', !dark);
    }
  }

  function themeFromUrl() {
    var raw = hashParams().get('tgWebAppThemeParams') || new URLSearchParams(location.search).get('tgWebAppThemeParams');
    if (!raw) return;
    try { applyTheme(JSON.parse(raw)); } catch (e) { /* ignore malformed theme */ }
  }

  function tgSupports(version) {
    try { return !!(tg && tg.isVersionAtLeast && tg.isVersionAtLeast(version)); } catch (e) { return false; }
  }
  function tgTry(fn) { try { fn(); } catch (e) { /* older clients lack some methods */ } }

  function attachTelegram() {
    var wa = window.Telegram && window.Telegram.WebApp;
    if (!wa || tg) return;
    tg = wa;
    inTelegram = !!(tg.platform && tg.platform !== 'unknown');
    document.documentElement.classList.toggle('tg', inTelegram);
    tgTry(function () { tg.ready(); });
    tgTry(function () { tg.expand(); });
    applyTheme(tg.themeParams, tg.colorScheme);
    tgTry(function () { tg.onEvent('themeChanged', function () { applyTheme(tg.themeParams, tg.colorScheme); }); });
    tgTry(function () { tg.MainButton.onClick(onMainButton); });
    tgTry(function () { tg.BackButton.onClick(onBackButton); });
    syncTelegramControls();
    var cbs = tgCallbacks; tgCallbacks = [];
    cbs.forEach(function (cb) { cb(); });
  }

  function waitForTelegram(ms) {
    return new Promise(function (resolve) {
      if (tg) return resolve(true);
      var tag = $('tg-script');
      var done = false;
      function finish(ok) { if (!done) { done = true; resolve(ok); } }
      tgCallbacks.push(function () { finish(true); });
      if (tag) tag.addEventListener('error', function () { finish(false); });
      setTimeout(function () { finish(!!tg); }, ms);
    });
  }

  function haptic(kind) {
    if (!tg || !tg.HapticFeedback || !tgSupports('6.1')) return;
    tgTry(function () {
      if (kind === 'success' || kind === 'warning' || kind === 'error') tg.HapticFeedback.notificationOccurred(kind);
      else tg.HapticFeedback.impactOccurred(kind || 'light');
    });
  }

  // ------------------------------------------------------------------ API
  function ApiError(status, code, message, retryable, retryAfter) {
    this.status = status; this.code = code; this.message = message; this.retryable = !!retryable;
    this.retryAfter = retryAfter || 0;  // seconds, for 429 (rate limited)
  }

  var initData = '';
  var clockRef = 0; // performance.now() at the middle of the last request/response

  async function api(method, path, body) {
    // Every call has one client-generated id, reused by its retries: the body's
    // request_id makes submits idempotent on the server; the header correlates logs.
    var requestId = (body && body.request_id) || newRequestId();
    var headers = { 'Accept': 'application/json', 'Accept-Language': L.lang, 'Authorization': 'tma ' + initData,
                    'X-Request-ID': requestId };
    var opts = { method: method, headers: headers, cache: 'no-store', credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);   // the same bytes — and request_id — on every retry
    }
    var delays = [400, 1000, 2000, 4000];
    for (var attempt = 0; ; attempt++) {
      var sent = performance.now();
      var res;
      try {
        res = await fetch(path, opts);
      } catch (e) {
        if (attempt < delays.length) {
          banner(_('Connection lost — retrying…'), 'info');
          await sleep(delays[attempt]);
          continue;
        }
        throw new ApiError(0, 'network', _('No connection to the game server.'), true);
      }
      // 429 is never retried on its own: every attempt counts against the limit (game/limits.py)
      if ((res.status === 502 || res.status === 503 || res.status === 504) && attempt < delays.length) {
        var after = parseFloat(res.headers.get('Retry-After') || '');
        banner(_('The server is busy — retrying…'), 'info');
        await sleep(isFinite(after) && after > 0 ? Math.min(after * 1000, 8000) : delays[attempt]);
        continue;
      }
      clockRef = (sent + performance.now()) / 2;
      bannerClear('info');
      var data = null;
      try { data = await res.json(); } catch (e) { data = null; }
      if (!res.ok) {
        var err = (data && data.error) || {};
        var wait = parseFloat(res.headers.get('Retry-After') || err.retry_after || '');
        throw new ApiError(res.status, err.code || ('http_' + res.status), err.message || res.statusText || _('Request failed'),
                           res.status >= 500, isFinite(wait) ? wait : 0);
      }
      return data;
    }
  }

  // ------------------------------------------------------------------ banner
  var bannerKind = null;
  var countdown = null;  // the interval of a rate-limit countdown in the banner
  function banner(text, kind, retry, keepCountdown) {
    if (!keepCountdown) stopCountdown();
    var b = $('banner');
    b.textContent = '';
    b.className = 'banner' + (kind === 'error' ? ' error' : '');
    b.appendChild(el('span', null, text));
    if (retry) {
      var btn = el('button', 'btn secondary', _('Retry'));
      btn.type = 'button';
      btn.addEventListener('click', function () { bannerClear(); retry(); });
      b.appendChild(btn);
    }
    b.hidden = false;
    bannerKind = kind || 'info';
  }
  function bannerClear(onlyKind) {
    if (onlyKind && bannerKind !== onlyKind) return;
    stopCountdown();
    $('banner').hidden = true;
    bannerKind = null;
  }
  function stopCountdown() {
    if (countdown !== null) { clearInterval(countdown); countdown = null; }
  }
  // 429: how long until the player may go on, counted down each second; then the
  // banner says so (with Retry when the refused action can be re-sent as it was).
  function rateLimited(err, retry) {
    var until = performance.now() + Math.max(1, Math.ceil(err.retryAfter || 1)) * 1000;
    var tick = function () {
      var left = Math.ceil((until - performance.now()) / 1000);
      if (left <= 0) { banner(_('You can go on now.'), 'info', retry); return; }
      var mm = Math.floor(left / 60), ss = left % 60;
      banner(mm ? _('Too many requests. Please wait {time}.', { time: mm + ':' + (ss < 10 ? '0' : '') + ss })
                : ngettext('Too many requests. Please wait {n} second.', 'Too many requests. Please wait {n} seconds.', left),
             'error', null, true);
      $('banner').setAttribute('data-wait', String(left));
    };
    stopCountdown();
    tick();
    countdown = setInterval(tick, 1000);
  }

  // ------------------------------------------------------------------ screens
  var screen = 'loading';
  var SCREENS = ['loading', 'auth', 'home', 'game', 'summary', 'leaders', 'validate', 'duel', 'describe'];
  var leadersReturn = 'home';

  function show(name) {
    screen = name;
    SCREENS.forEach(function (s) { $('screen-' + s).hidden = s !== name; });
    syncTelegramControls();
    window.scrollTo(0, 0);
  }

  var mode = 'ask'; // within the game screen: 'ask' | 'verdict' | 'correct' | 'busy' | 'ended'

  function mainAction() {
    if (screen === 'home') return { text: _('Play'), run: startGame };
    if (screen === 'summary') return { text: _('Play again'), run: startGame };
    if (screen === 'game' && mode === 'correct') return { text: _('Send correction'), run: submitCorrection };
    return null;
  }
  function onMainButton() { var a = mainAction(); if (a) a.run(); }
  function onBackButton() {
    if (screen === 'leaders') return leadersBack();
    if (screen === 'validate') return validateBack();
    if (screen === 'duel') return showHome();
    if (screen === 'describe') return describeBack();
    if (screen === 'game' && mode === 'correct') return undoWrong();
  }

  function syncTelegramControls() {
    if (!tg) return;
    var playing = screen === 'game';
    var action = inTelegram ? mainAction() : null;
    tgTry(function () {
      if (action) { tg.MainButton.setText(action.text); tg.MainButton.show(); tg.MainButton.enable(); }
      else tg.MainButton.hide();
    });
    document.querySelectorAll('.js-main').forEach(function (b) { b.classList.toggle('tg-mirrored', inTelegram); });
    var nativeBack = inTelegram && tgSupports('6.1');
    document.querySelectorAll('.js-back').forEach(function (b) { b.classList.toggle('tg-mirrored', nativeBack); });
    if (tgSupports('6.1')) {
      tgTry(function () {
        if (screen === 'leaders' || screen === 'validate' || screen === 'duel' || screen === 'describe' || (playing && mode === 'correct')) tg.BackButton.show(); else tg.BackButton.hide();
      });
    }
    if (tgSupports('6.2')) {
      tgTry(function () { if (playing) tg.enableClosingConfirmation(); else tg.disableClosingConfirmation(); });
    }
    if (tgSupports('7.7')) {
      tgTry(function () { if (playing) tg.disableVerticalSwipes(); else tg.enableVerticalSwipes(); });
    }
  }

  function showAuth(detail) {
    stopTimer();
    $('auth-detail').textContent = detail ||
      _('This page needs your Telegram sign-in. Open it with the bot\u2019s \u201cPlay\u201d button.');
    show('auth');
  }

  // Central error handling for every action. `retry` re-runs the same action
  // (with the same request_id) when the network gave up.
  function handleError(err, retry) {
    if (!(err instanceof ApiError)) {
      console.error(err);
      banner(_('Something went wrong. Please try again.'), 'error', retry);
      return;
    }
    if (err.status === 401) {
      showAuth(err.code === 'expired_init_data' || /expire/i.test(err.message || '')
        ? _('Your sign-in has expired. Close this page and open the game again from Telegram.') : null);
      return;
    }
    if (err.status === 429) return rateLimited(err, retry);
    if (err.status === 0 || err.retryable) {
      banner(err.status === 0 ? _('No connection.') : (err.message || _('Server error.')), 'error', retry);
      return;
    }
    banner(err.message || _('Something went wrong.'), 'error');
  }

  // ------------------------------------------------------------------ timer
  var timer = { endAt: 0, total: 120, handle: null, fired: false };

  function syncTimer(image) {
    var left = Number(image.seconds_left);
    if (!isFinite(left)) left = Math.max(0, (Number(image.deadline_ms) - Date.now()) / 1000);
    timer.endAt = clockRef + Math.max(0, left) * 1000;
    timer.total = Number(image.seconds_total) || Number(cfg.imageSeconds) || Math.max(left, 1);
    timer.fired = false;
    if (!timer.handle) timer.handle = setInterval(tick, 250);
    tick();
  }
  function stopTimer() {
    if (timer.handle) { clearInterval(timer.handle); timer.handle = null; }
  }
  function timeLeftMs() { return Math.max(0, timer.endAt - performance.now()); }
  function formatSeconds(s) {
    var m = Math.floor(s / 60), r = s % 60;
    return m + ':' + (r < 10 ? '0' : '') + r;
  }
  function tick() {
    var ms = timeLeftMs();
    var secs = Math.ceil(ms / 1000);
    var frac = Math.max(0, Math.min(1, ms / (timer.total * 1000)));
    $('timer-text').textContent = formatSeconds(secs);
    $('timer').setAttribute('aria-label', ngettext('Time left: {n} second', 'Time left: {n} seconds', secs));
    $('ring-bar').style.strokeDashoffset = String(100 - frac * 100);
    $('timer').classList.toggle('low', secs <= 10);
    if (ms <= 0 && !timer.fired && screen === 'game') {
      timer.fired = true;
      onTimeUp();
    }
  }

  // ------------------------------------------------------------------ game state
  var game = { sessionId: null, index: -1, image: null, pendingAnswerId: null };

  function humanIndex(image) { return Number(image.index) + 1; }

  function applyState(state, opts) {
    opts = opts || {};
    if (!state) return;
    var sameSession = game.sessionId === state.session_id;
    game.sessionId = state.session_id;
    if (state.status === 'finished' || !state.image) {
      stopTimer();
      return showSummary(state.session_id);
    }
    var image = state.image;
    var changed = !sameSession || image.index !== game.index || image.url !== (game.image && game.image.url);
    game.image = image;
    game.index = image.index;
    if (changed) {
      $('timeup').hidden = true;
      var img = $('image');
      img.src = image.url;
      $('zoom-image').src = image.url;
      $('progress-index').textContent = String(humanIndex(image));
      $('progress-total').textContent = String(image.total || 10);
      $('progress').setAttribute('aria-label', _('Image {index} of {total}', { index: humanIndex(image), total: image.total || 10 }));
      $('question').value = '';
      $('correction').value = '';
      updateCounters();
      setFieldError('question', '');
      setFieldError('correction', '');
    }
    renderChat(image.answers || []);
    var pending = (image.answers || []).filter(function (a) { return !a.verdict; });
    game.pendingAnswerId = pending.length ? pending[pending.length - 1].answer_id : null;
    if (!(mode === 'correct' && !changed && game.pendingAnswerId)) setMode(game.pendingAnswerId ? 'verdict' : 'ask');
    syncTimer(image);
    if (screen !== 'game') show('game');
    if (changed && opts.focus !== false && mode === 'ask') focusQuestion();
  }

  function renderChat(answers) {
    var chat = $('chat');
    chat.textContent = '';
    answers.forEach(function (a) {
      chat.appendChild(el('li', 'bubble q', a.question));
      var bubble = el('li', 'bubble a', a.answer);
      if (a.verdict) bubble.appendChild(el('span', 'tag', a.verdict === 'correct' ? _('You said: correct') : _('You said: wrong')));
      chat.appendChild(bubble);
      if (a.correction) chat.appendChild(el('li', 'bubble c', a.correction));
    });
    $('examples').hidden = answers.length > 0 || !(cfg.examples && cfg.examples.length);
    chat.scrollTop = chat.scrollHeight;
  }

  function setMode(next) {
    mode = next;
    var ended = next === 'ended';
    $('verdict').hidden = next !== 'verdict';
    $('correction-form').hidden = next !== 'correct';
    $('question-form').hidden = next === 'verdict' || next === 'correct';
    $('question').disabled = next !== 'ask';
    $('btn-ask').disabled = next !== 'ask';
    $('btn-correct').disabled = ended || next === 'busy';
    $('btn-wrong').disabled = ended || next === 'busy';
    $('correction').disabled = next !== 'correct';
    $('btn-send-correction').disabled = next !== 'correct';
    syncTelegramControls();
  }

  function focusQuestion() {
    // On touch devices focusing pops the keyboard over the image; only do it with a real keyboard.
    if (window.matchMedia && window.matchMedia('(pointer: fine)').matches) $('question').focus();
  }

  function setFieldError(field, text) { $(field + '-error').textContent = text || ''; }

  function updateCounters() {
    var q = $('question').value.length, c = $('correction').value.length;
    $('question-count').textContent = q + ' / ' + MAX_Q;
    $('question-count').classList.toggle('over', q > MAX_Q);
    $('correction-count').textContent = c + ' / ' + MAX_C;
    $('correction-count').classList.toggle('over', c > MAX_C);
  }

  // Mirrors the server's rule (1..max characters after trimming, not only control characters).
  function validateText(value, max, empty) {
    var text = value.trim();
    // eslint-disable-next-line no-control-regex
    if (!text || !text.replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]/g, '').trim()) {
      return { error: empty };
    }
    if (text.length > max) return { error: ngettext('At most {n} character.', 'At most {n} characters.', max) };
    return { text: text };
  }

  // ------------------------------------------------------------------ actions
  var busy = false;

  async function startGame() {
    if (busy) return;
    busy = true;
    var body = { request_id: newRequestId() };
    var run = async function () {
      try {
        applyState(await api('POST', '/api/sessions', body));
      } catch (err) {
        handleError(err, run);
      } finally { busy = false; }
    };
    await run();
  }

  async function ask(text) {
    if (mode !== 'ask' || !game.sessionId) return;
    var body = { request_id: newRequestId(), text: text };
    var sessionId = game.sessionId, index = game.index;
    var chat = $('chat');
    var q = el('li', 'bubble q', text);
    var thinking = el('li', 'bubble a pending', _('Thinking…'));
    chat.appendChild(q); chat.appendChild(thinking);
    chat.scrollTop = chat.scrollHeight;
    $('examples').hidden = true;
    $('question').value = '';
    updateCounters();
    setMode('busy');
    var run = async function () {
      try {
        var res = await api('POST', '/api/sessions/' + encodeURIComponent(sessionId) + '/questions', body);
        if (game.index !== index) return;  // the image ended meanwhile
        thinking.classList.remove('pending');
        thinking.textContent = res.answer;
        game.pendingAnswerId = res.answer_id;
        if (game.image) {
          game.image.answers = (game.image.answers || []).concat([{ answer_id: res.answer_id, question: text, answer: res.answer, verdict: null }]);
        }
        setMode('verdict');
        haptic('light');
        $('btn-correct').focus({ preventScroll: true });
      } catch (err) {
        if (err instanceof ApiError && (err.status === 0 || err.retryable)) {
          thinking.textContent = _('Not sent yet — waiting for the connection.');
          handleError(err, run);   // Retry re-sends the same request_id: never asked twice
          return;
        }
        q.remove(); thinking.remove();
        if (err instanceof ApiError && err.status === 429) {
          $('question').value = text; updateCounters();   // kept for when the wait is over
          setMode('ask');
          rateLimited(err);
        } else if (err instanceof ApiError && err.status === 400) {
          $('question').value = text; updateCounters();
          setMode('ask');
          setFieldError('question', err.message);
          $('question').focus();
        } else if (err instanceof ApiError && err.status === 409) {
          await onConflict(err);
        } else {
          setMode('ask');
          handleError(err);
        }
      }
    };
    await run();
  }

  async function sendVerdict(verdict, correction) {
    var answerId = game.pendingAnswerId;
    if (!answerId) return;
    var body = { request_id: newRequestId(), verdict: verdict };
    if (verdict === 'wrong') body.correction = correction;
    var before = mode;
    setMode('busy');
    var run = async function () {
      try {
        var state = await api('POST', '/api/answers/' + encodeURIComponent(answerId) + '/verdict', body);
        haptic(verdict === 'correct' ? 'success' : 'warning');
        if (verdict === 'wrong') { $('correction').value = ''; updateCounters(); }
        applyState(state);
      } catch (err) {
        if (err instanceof ApiError && (err.status === 0 || err.retryable)) {
          handleError(err, run);
          return;
        }
        if (err instanceof ApiError && err.status === 400) {
          setMode(before);
          if (verdict === 'wrong') { setFieldError('correction', err.message); $('correction').focus(); }
          else banner(err.message, 'error');
        } else if (err instanceof ApiError && err.status === 409) {
          await onConflict(err);
        } else {
          setMode(before);
          handleError(err);
        }
      }
    };
    await run();
  }

  function chooseWrong() {
    if (mode !== 'verdict') return;
    haptic('medium');
    setMode('correct');
    setFieldError('correction', '');
    $('correction').focus();
  }
  function undoWrong() {
    if (mode !== 'correct') return;
    setMode('verdict');
    $('btn-wrong').focus();
  }
  function submitCorrection() {
    if (mode !== 'correct') return;
    var v = validateText($('correction').value, MAX_C, _('Please type the correct answer.'));
    if (v.error) { setFieldError('correction', v.error); $('correction').focus(); return; }
    setFieldError('correction', '');
    sendVerdict('wrong', v.text);
  }

  // 409: the image is over (deadline) or the state moved on elsewhere — show why, then resync.
  async function onConflict(err) {
    if (err.code === 'expired') return onTimeUp();
    banner(err.message || _('The game moved on.'), 'info');
    setTimeout(function () { bannerClear('info'); }, 3000);
    await refreshState();
  }

  async function refreshState() {
    try {
      applyState(await api('GET', '/api/sessions/current'));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return sessionGone();
      handleError(err, refreshState);
    }
  }

  // No active session any more: the one we were playing finished (e.g. a late
  // request ended its last image), so show its summary; else go home.
  function sessionGone() {
    if (game.sessionId) return showSummary(game.sessionId, true);
    showHome();
  }

  // The image ended by timeout: say so clearly, then show the next image (or the summary).
  var timeUpRunning = false;
  async function onTimeUp() {
    if (timeUpRunning || screen !== 'game') return;
    timeUpRunning = true;
    var index = game.index;
    setMode('ended');
    $('timeup-text').textContent = _("Time's up");
    var last = game.image && Number(game.image.index) + 1 >= Number(game.image.total || 10);
    $('timeup-next').textContent = last ? _('Your results…') : _('Next picture…');
    $('timeup').hidden = false;
    haptic('error');
    var shownAt = performance.now();
    try {
      for (var attempt = 0; attempt < 20; attempt++) {
        var state;
        try {
          state = await api('GET', '/api/sessions/current');
        } catch (err) {
          if (err instanceof ApiError && err.status === 404) { sessionGone(); return; }
          if (err instanceof ApiError && (err.status === 0 || err.retryable)) { await sleep(1000); continue; }
          handleError(err);
          return;
        }
        var moved = state.status !== 'playing' || !state.image || state.image.index !== index;
        if (!moved && Number(state.image.seconds_left) > 0.5) {
          // Our clock ran ahead of the server's: the image is still running.
          $('timeup').hidden = true;
          mode = 'ask';
          applyState(state);
          return;
        }
        if (moved) {
          var wait = TIMEUP_SHOW_MS - (performance.now() - shownAt);
          if (wait > 0) await sleep(wait);
          applyState(state);
          return;
        }
        await sleep(400);
      }
      banner(_('The server did not move on to the next image.'), 'error', refreshState);
    } finally {
      timeUpRunning = false;
    }
  }

  // ------------------------------------------------------------------ summary
  function verdictLine(answer, tainted) {
    var text, cls = null;
    if (answer.verdict === 'wrong' && answer.tainted) { text = _('❌ Caught a lie'); }
    else if (answer.verdict === 'wrong' && tainted) { text = _('❌ False alarm — that answer was true'); }
    else if (answer.verdict === 'wrong' && answer.validation === 'confirmed') { text = _('🔎 Find confirmed by other players'); cls = 'find confirmed'; }
    else if (answer.verdict === 'wrong' && answer.validation === 'rejected') { text = _('🔎 Find not confirmed by other players'); cls = 'find'; }
    else if (answer.verdict === 'wrong') { text = _('🔎 Find — awaiting validation (+20 if confirmed)'); cls = 'find'; }
    else if (answer.verdict === 'correct' && answer.tainted) { text = _('✅ Missed — that answer was a lie'); }
    else if (answer.verdict === 'correct') { text = _('✅ Correct'); }
    else { text = _('… Not judged'); }
    var pts = (Number(answer.points) || 0) + (Number(answer.bonus) || 0);
    if (pts) text += ' (' + (pts > 0 ? '+' : '−') + Math.abs(pts) + ')';
    return { text: text, cls: cls };
  }

  async function showSummary(sessionId, homeIfUnavailable) {
    stopTimer();
    var run = async function () {
      var data;
      try {
        data = await api('GET', '/api/sessions/' + encodeURIComponent(sessionId) + '/summary');
      } catch (err) {
        if (homeIfUnavailable && err instanceof ApiError && (err.status === 404 || err.status === 409)) {
          game.sessionId = null;
          return showHome();
        }
        return handleError(err, run);
      }
      renderSummary(data);
      show('summary');
    };
    await run();
  }

  function renderSummary(data) {
    $('summary-points').textContent = String(data.total_points || 0);
    var list = $('summary-list');
    list.textContent = '';
    var finds = 0;
    (data.images || []).forEach(function (image) {
      var li = el('li', 'summary-item');
      var row = el('div', 'summary-row');
      row.appendChild(el('span', 'idx', '#' + (Number(image.index) + 1)));
      var kind = el('span', 'kind');
      kind.appendChild(el('span', 'badge ' + (image.tainted ? 'tainted' : 'honest'), image.tainted ? _('Lying model') : _('Honest model')));
      if (image.end_reason === 'timeout') kind.appendChild(el('span', 'muted', ' · ' + _('time ran out')));
      row.appendChild(kind);
      var pts = Number(image.points) || 0;
      row.appendChild(el('span', 'score ' + (pts > 0 ? 'pos' : pts < 0 ? 'neg' : ''), (pts > 0 ? '+' : pts < 0 ? '−' : '') + Math.abs(pts)));
      li.appendChild(row);
      var answers = image.answers || [];
      if (answers.length) {
        var ul = el('ul', 'answers');
        answers.forEach(function (a) {
          var line = verdictLine(a, image.tainted);
          if (a.verdict === 'wrong' && !image.tainted && (!a.validation || a.validation === 'pending')) finds++;
          var item = el('li');
          if (a.question) {
            item.appendChild(el('span', 'q', '“' + a.question + '” → ' + (a.answer || '')));
            if (a.correction) item.appendChild(el('span', null, ' ' + _('(you: {correction})', { correction: a.correction })));
            item.appendChild(document.createElement('br'));
          }
          item.appendChild(el('span', line.cls, line.text));
          ul.appendChild(item);
        });
        li.appendChild(ul);
      }
      list.appendChild(li);
    });
    var findsLine = $('summary-finds');
    findsLine.hidden = finds === 0;
    findsLine.textContent = ngettext('{n} find awaits validation by other players (+20 when confirmed).',
                                     '{n} finds await validation by other players (+20 each when confirmed).', finds);
  }

  // ------------------------------------------------------------------ leaderboard
  var leadersPeriod = 'week';

  async function showLeaders(period, from) {
    if (from) leadersReturn = from;
    leadersPeriod = period || leadersPeriod;
    $('tab-week').setAttribute('aria-selected', String(leadersPeriod === 'week'));
    $('tab-all').setAttribute('aria-selected', String(leadersPeriod === 'all'));
    $('tab-week').tabIndex = leadersPeriod === 'week' ? 0 : -1;
    $('tab-all').tabIndex = leadersPeriod === 'all' ? 0 : -1;
    show('leaders');
    var list = $('leaders-list');
    list.setAttribute('aria-busy', 'true');
    try {
      var data = await api('GET', '/api/leaderboard?period=' + leadersPeriod);
      renderLeaders(data);
    } catch (err) {
      handleError(err, function () { showLeaders(leadersPeriod); });
    } finally {
      list.removeAttribute('aria-busy');
    }
  }

  function renderLeaders(data) {
    var list = $('leaders-list');
    list.textContent = '';
    var rows = (data && (data.players || data.entries || data.leaders)) || [];
    rows.forEach(function (p) {
      var li = el('li', p.me ? 'me' : null);
      li.appendChild(el('span', 'rank', String(p.rank)));
      li.appendChild(el('span', 'name', (p.name || p.display_name || _('player')) + (p.me ? ' ' + _('(you)') : '')));
      li.appendChild(el('span', 'lp', String(p.points)));
      list.appendChild(li);
    });
    var me = data && data.me;
    if (me && !rows.some(function (p) { return p.me; })) {
      var li = el('li', 'me');
      li.appendChild(el('span', 'rank', String(me.rank)));
      li.appendChild(el('span', 'name', (me.name || _('you')) + ' ' + _('(you)')));
      li.appendChild(el('span', 'lp', String(me.points)));
      list.appendChild(li);
    }
    $('leaders-empty').hidden = rows.length > 0;
  }

  function leadersBack() {
    if (leadersReturn === 'summary') show('summary'); else showHome();
  }

  // ------------------------------------------------------------------ peer validation (checking others' finds)
  var validateReturn = 'home';
  var check = { find: null, busy: false, done: 0 };

  function showValidate(from) {
    if (from) validateReturn = from;
    check.done = 0;
    $('validate-count').textContent = '';
    show('validate');
    nextFind();
  }

  function renderFind(find) {
    check.find = find;
    $('validate-empty').hidden = !!find;
    $('validate-item').hidden = !find;
    if (!find) { $('btn-validate-back').focus(); return; }
    $('validate-image').src = (find.image && find.image.url) || '';
    $('validate-question').textContent = find.question || '';
    $('validate-answer').textContent = find.answer || '';
    $('validate-correction').textContent = find.correction || '';
    $('btn-agree').disabled = $('btn-disagree').disabled = false;
  }

  async function nextFind() {
    $('btn-agree').disabled = $('btn-disagree').disabled = true;
    try {
      renderFind(await api('GET', '/api/validations/next'));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return renderFind(null);
      handleError(err, nextFind);
    }
  }

  async function sendCheck(agrees) {
    var find = check.find;
    if (!find || check.busy) return;
    check.busy = true;
    $('btn-agree').disabled = $('btn-disagree').disabled = true;
    var body = { request_id: newRequestId(), agrees: agrees };
    var run = async function () {
      try {
        await api('POST', '/api/validations/' + encodeURIComponent(find.find_id), body);
        haptic('light');
        check.done++;
        $('validate-count').textContent = _('Checked: {n}', { n: check.done });
      } catch (err) {
        if (err instanceof ApiError && (err.status === 0 || err.retryable)) { check.busy = false; return handleError(err, run); }
        // 404/409: the find went away or was already checked here — simply move on.
        if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 409)) handleError(err);
      }
      check.busy = false;
      if (screen === 'validate') await nextFind();
    };
    await run();
  }

  function validateBack() {
    if (validateReturn === 'summary') show('summary'); else showHome();
  }

  // ------------------------------------------------------------------ preference duels (SPEC §3.4)
  // Batches of five one-tap choices; the server decides everything (hidden checks, minimum
  // time, points, removal). The buttons wait out the minimum time the server reports.
  var duel = { state: null, busy: false, readyAt: 0, readyTimer: null };
  var DUEL_PANELS = ['loading', 'tutorial', 'item', 'result', 'removed'];

  function duelPanel(name) {
    DUEL_PANELS.forEach(function (p) { $('duel-' + p).hidden = p !== name; });
  }

  async function showDuels() {
    show('duel');
    $('duel-progress').textContent = '';
    duelPanel('loading');
    try {
      var state = await api('GET', '/api/duels/current');
      if (state.status === 'removed' || state.status === 'playing') return renderDuel(state);
      if (!state.tutorial_done) return startTutorial();
      await startDuels();
    } catch (err) { handleError(err, showDuels); }
  }

  async function startDuels() {
    duelPanel('loading');
    try {
      renderDuel(await api('POST', '/api/duels'));
    } catch (err) {
      if (err instanceof ApiError && err.code === 'removed') return renderDuel({ status: 'removed', message: err.message });
      handleError(err, startDuels);
    }
  }

  function startTutorial() {
    $('tut-feedback').textContent = '';
    $('tut-rules').hidden = $('btn-tut-start').hidden = true;
    $('tut-left').className = $('tut-right').className = 'duel-side';
    $('tut-left').disabled = $('tut-right').disabled = false;
    duelPanel('tutorial');
  }

  function tutorialPick(right) {
    if (!right) {
      $('tut-left').className = 'duel-side wrong-pick';
      $('tut-feedback').textContent = _('Not quite — look again: the caption says a red circle.');
      return;
    }
    $('tut-right').className = 'duel-side right-pick';
    $('tut-left').className = 'duel-side';
    $('tut-left').disabled = $('tut-right').disabled = true;
    $('tut-feedback').textContent = _('Right! That is all there is to it.');
    $('tut-rules').hidden = $('btn-tut-start').hidden = false;
    $('btn-tut-start').focus();
  }

  async function finishTutorial() {
    try {
      await api('POST', '/api/duels/tutorial');
    } catch (err) { return handleError(err, finishTutorial); }
    await startDuels();
  }

  function renderDuel(state) {
    duel.state = state;
    clearTimeout(duel.readyTimer);
    if (state.status === 'removed') {
      $('duel-progress').textContent = '';
      $('duel-removed').textContent = state.message || _('Duels are closed for you.');
      return duelPanel('removed');
    }
    if (state.status === 'finished' && state.result) {
      var r = state.result;
      $('duel-progress').textContent = _('Batch done');
      $('duel-points').textContent = String(r.points || 0);
      $('duel-checks').textContent = _('Checks right: {right} of {checks} · your accuracy: {accuracy} %', {
        right: r.checks_right, checks: r.checks, accuracy: Math.round(100 * Number(r.accuracy || 0)) });
      duelPanel('result');
      $('btn-duel-next').focus();
      return;
    }
    if (state.status !== 'playing' || !state.item) return startDuels();
    var item = state.item;
    $('duel-progress').textContent = _('Duel {index} / {total}', { index: Number(item.index) + 1, total: item.total });
    $('duel-ask').textContent = item.kind === 'caption' ? _('Which picture fits the caption?') : _('Which answer is right?');
    $('duel-prompt').textContent = '“' + item.prompt + '”';
    $('duel-image').hidden = !item.image_url;
    if (item.image_url) $('duel-image').src = item.image_url;
    ['left', 'right'].forEach(function (side) {
      var btn = $('duel-' + side);
      var s = item[side] || {};
      btn.textContent = '';
      if (s.url) {
        var img = el('img');
        img.src = s.url;
        img.alt = side === 'left' ? _('Left picture') : _('Right picture');
        btn.appendChild(img);
        btn.setAttribute('aria-label', side === 'left' ? _('Left picture') : _('Right picture'));
      } else {
        btn.appendChild(el('span', 'duel-text', s.text || ''));
        btn.setAttribute('aria-label', side === 'left' ? _('Left answer: {text}', { text: s.text || '' })
                                                       : _('Right answer: {text}', { text: s.text || '' }));
      }
      btn.disabled = true;
    });
    duel.readyAt = performance.now() + Math.max(0, Number(item.wait_ms) || 0);
    duelPanel('item');
    armDuel();
  }

  function armDuel() {
    clearTimeout(duel.readyTimer);
    var ms = duel.readyAt - performance.now();
    if (ms > 0) {
      $('duel-hint').textContent = _('Look at both…');
      duel.readyTimer = setTimeout(armDuel, ms);
      return;
    }
    $('duel-left').disabled = $('duel-right').disabled = false;
    $('duel-hint').textContent = _('Tap your choice.');
  }

  async function refreshDuel() {
    try { renderDuel(await api('GET', '/api/duels/current')); } catch (err) { handleError(err, refreshDuel); }
  }

  async function chooseDuel(side) {
    var item = duel.state && duel.state.item;
    if (!item || duel.busy || $('duel-' + side).disabled) return;
    duel.busy = true;
    $('duel-left').disabled = $('duel-right').disabled = true;
    var body = { request_id: newRequestId(), choice: side };
    var run = async function () {
      try {
        var state = await api('POST', '/api/duels/items/' + encodeURIComponent(item.item_id) + '/choice', body);
        duel.busy = false;
        haptic('light');
        renderDuel(state);
      } catch (err) {
        duel.busy = false;
        if (err instanceof ApiError && err.code === 'too_fast') {
          $('duel-hint').textContent = err.message;
          duel.readyAt = performance.now() + 500;
          return armDuel();
        }
        if (err instanceof ApiError && err.code === 'removed') return renderDuel({ status: 'removed', message: err.message });
        if (err instanceof ApiError && (err.status === 404 || err.status === 409)) return refreshDuel();
        if (err instanceof ApiError && (err.status === 0 || err.retryable)) { duel.busy = true; return handleError(err, run); }
        handleError(err);
        armDuel();
      }
    };
    await run();
  }

  // ------------------------------------------------------------------ describe round (SPEC §3.5)
  // One picture to describe within the server's deadline, then other players'
  // descriptions to rate ("does it fit the picture?"); confirmed descriptions earn points.
  var describeReturn = 'home';
  var desc = { task: null, busy: false, endAt: 0, handle: null, rating: null, max: 300 };

  function showDescribe(from) {
    if (from) describeReturn = from;
    show('describe');
    openDescribeTask();
  }

  function stopDescribeTimer() { if (desc.handle) { clearInterval(desc.handle); desc.handle = null; } }

  function describeTick() {
    var left = Math.max(0, Math.ceil((desc.endAt - performance.now()) / 1000));
    $('describe-seconds').textContent = String(left);
    $('describe-seconds').parentNode.classList.toggle('low', left <= 10);
    if (left <= 0 && desc.task) {
      stopDescribeTimer();
      desc.task = null;
      $('btn-send-description').disabled = true;
      setFieldError('describe', _('Time is up for this picture.'));
      $('btn-describe-next').hidden = false;
    }
  }

  async function openDescribeTask() {
    stopDescribeTimer();
    $('describe-task').hidden = false;
    $('describe-done').hidden = true;
    $('rate-item').hidden = true;
    $('btn-describe-next').hidden = true;
    $('btn-send-description').disabled = true;
    setFieldError('describe', '');
    try {
      var task = await api('POST', '/api/describe');
      desc.task = task;
      desc.max = Number(task.max_chars) || 300;
      $('describe-text').setAttribute('maxlength', String(desc.max));
      var draft = load('session', 'gap.describe.' + task.task_id);
      if (draft && !$('describe-text').value.trim()) $('describe-text').value = draft;  // never clobber typing
      updateDescribeCount();
      $('describe-image').src = task.image.url;
      desc.endAt = clockRef + Math.max(0, Number(task.image.seconds_left) || 0) * 1000;
      $('btn-send-description').disabled = false;
      describeTick();
      desc.handle = setInterval(describeTick, 250);
      $('describe-text').focus();
    } catch (err) {
      if (err instanceof ApiError && err.status === 503) {
        $('describe-task').hidden = true;
        $('describe-done').hidden = false;
        $('describe-done').textContent = _('No pictures to describe right now — thank you!');
        return nextRating();
      }
      handleError(err, openDescribeTask);
    }
  }

  function updateDescribeCount() {
    var n = $('describe-text').value.length;
    $('describe-count').textContent = n + ' / ' + desc.max;
    $('describe-count').classList.toggle('over', n > desc.max);
  }

  async function sendDescription() {
    var task = desc.task;
    if (desc.busy) return;
    if (!task) { setFieldError('describe', _('Wait for the picture, please.')); return; }
    var v = validateText($('describe-text').value, desc.max, _('Please type a description.'));
    if (v.error) { setFieldError('describe', v.error); $('describe-text').focus(); return; }
    desc.busy = true;
    $('btn-send-description').disabled = true;
    var body = { request_id: newRequestId(), text: v.text };
    var run = async function () {
      try {
        var got = await api('POST', '/api/describe/' + encodeURIComponent(task.task_id), body);
        haptic('light');
        stopDescribeTimer();
        desc.task = null;
        $('describe-text').value = '';
        $('describe-task').hidden = true;
        $('describe-done').hidden = false;
        $('describe-done').textContent = _('Saved ({seconds} s). Points come when other players find that it fits.',
                                            { seconds: Math.round(got.seconds) });
        $('btn-describe-next').hidden = false;
        desc.busy = false;
        await nextRating();
        return;
      } catch (err) {
        desc.busy = false;
        if (err instanceof ApiError && (err.status === 0 || err.retryable)) return handleError(err, run);
        if (err instanceof ApiError && err.status === 400) {
          setFieldError('describe', err.message);
          $('btn-send-description').disabled = false;
          return;
        }
        if (err instanceof ApiError && (err.status === 409 || err.status === 404)) {
          stopDescribeTimer();
          desc.task = null;
          setFieldError('describe', err.message);
          $('btn-describe-next').hidden = false;
          return;
        }
        handleError(err);
      }
    };
    await run();
  }

  async function nextRating() {
    $('btn-fits').disabled = $('btn-misfits').disabled = true;
    try {
      var item = await api('GET', '/api/descriptions/next');
      desc.rating = item;
      $('rate-item').hidden = false;
      $('rate-image').src = item.image.url;
      $('rate-text').textContent = item.text;
      $('btn-fits').disabled = $('btn-misfits').disabled = false;
    } catch (err) {
      desc.rating = null;
      $('rate-item').hidden = true;
      if (!(err instanceof ApiError && err.status === 404)) handleError(err, nextRating);
    }
  }

  async function sendRating(fits) {
    var item = desc.rating;
    if (!item || desc.busy) return;
    desc.busy = true;
    $('btn-fits').disabled = $('btn-misfits').disabled = true;
    var body = { request_id: newRequestId(), fits: fits };
    var run = async function () {
      try {
        await api('POST', '/api/descriptions/' + encodeURIComponent(item.description_id) + '/rating', body);
        haptic('light');
      } catch (err) {
        if (err instanceof ApiError && (err.status === 0 || err.retryable)) { desc.busy = false; return handleError(err, run); }
        if (!(err instanceof ApiError) || (err.status !== 404 && err.status !== 409)) handleError(err);
      }
      desc.busy = false;
      if (screen === 'describe') await nextRating();
    };
    await run();
  }

  function describeBack() {
    stopDescribeTimer();
    desc.task = null;
    if (describeReturn === 'summary') show('summary'); else showHome();
  }

  // ------------------------------------------------------------------ home
  function showHome() {
    stopTimer();
    var firstRun = !load('local', 'gap.tutorialSeen');
    $('tutorial').open = firstRun;
    store('local', 'gap.tutorialSeen', '1');
    show('home');
  }

  // ------------------------------------------------------------------ zoom
  var zoomReturn = null;
  function openZoom() {
    if (!game.image) return;
    zoomReturn = document.activeElement;
    $('zoom').hidden = false;
    $('btn-zoom-close').focus();
  }
  function closeZoom() {
    if ($('zoom').hidden) return;
    $('zoom').hidden = true;
    if (zoomReturn && zoomReturn.focus) zoomReturn.focus();
  }

  // ------------------------------------------------------------------ wiring
  var imageBanner = false;
  // Questions and corrections are one line: Enter sends, and pasted line breaks become spaces
  // (the server refuses control characters).
  function submitOnEnter(textarea, submit) {
    textarea.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' && !e.isComposing) { e.preventDefault(); submit(); }
    });
    textarea.addEventListener('input', function () {
      if (/[\r\n\t]/.test(textarea.value)) textarea.value = textarea.value.replace(/[\r\n\t]+/g, ' ');
    });
  }

  function wire() {
    document.querySelectorAll('.js-penalty').forEach(function (n) { n.textContent = String(cfg.falseAlarmPenalty === undefined ? 10 : cfg.falseAlarmPenalty); });
    $('question').setAttribute('maxlength', String(MAX_Q));
    $('correction').setAttribute('maxlength', String(MAX_C));

    $('btn-play').addEventListener('click', startGame);
    $('btn-again').addEventListener('click', startGame);
    $('btn-leaders').addEventListener('click', function () { showLeaders('week', 'home'); });
    $('btn-summary-leaders').addEventListener('click', function () { showLeaders('week', 'summary'); });
    $('btn-leaders-back').addEventListener('click', leadersBack);
    $('btn-validate').addEventListener('click', function () { showValidate('home'); });
    $('btn-summary-validate').addEventListener('click', function () { showValidate('summary'); });
    $('btn-validate-back').addEventListener('click', validateBack);
    $('btn-describe').addEventListener('click', function () { showDescribe('home'); });
    $('btn-summary-describe').addEventListener('click', function () { showDescribe('summary'); });
    $('btn-describe-back').addEventListener('click', describeBack);
    $('btn-describe-next').addEventListener('click', openDescribeTask);
    $('describe-form').addEventListener('submit', function (e) { e.preventDefault(); sendDescription(); });
    submitOnEnter($('describe-text'), sendDescription);
    $('describe-text').addEventListener('input', function () {
      updateDescribeCount(); setFieldError('describe', '');
      if (desc.task) store('session', 'gap.describe.' + desc.task.task_id, $('describe-text').value);
    });
    $('btn-fits').addEventListener('click', function () { sendRating(true); });
    $('btn-misfits').addEventListener('click', function () { sendRating(false); });
    $('btn-agree').addEventListener('click', function () { sendCheck(true); });
    $('btn-disagree').addEventListener('click', function () { sendCheck(false); });
    $('btn-duels').addEventListener('click', showDuels);
    $('btn-duel-back').addEventListener('click', showHome);
    $('btn-duel-next').addEventListener('click', startDuels);
    $('duel-left').addEventListener('click', function () { chooseDuel('left'); });
    $('duel-right').addEventListener('click', function () { chooseDuel('right'); });
    $('tut-left').addEventListener('click', function () { tutorialPick(false); });
    $('tut-right').addEventListener('click', function () { tutorialPick(true); });
    $('btn-tut-start').addEventListener('click', finishTutorial);
    document.querySelectorAll('.js-duel-seconds').forEach(function (n) { n.textContent = String(cfg.duelSeconds === undefined ? 1.5 : cfg.duelSeconds); });
    $('tab-week').addEventListener('click', function () { showLeaders('week'); });
    $('tab-all').addEventListener('click', function () { showLeaders('all'); });
    $('screen-leaders').querySelector('[role=tablist]').addEventListener('keydown', function (e) {
      if (e.key === 'ArrowLeft' || e.key === 'ArrowRight') {
        var next = leadersPeriod === 'week' ? 'all' : 'week';
        showLeaders(next);
        $('tab-' + next).focus();
      }
    });

    $('question-form').addEventListener('submit', function (e) {
      e.preventDefault();
      var v = validateText($('question').value, MAX_Q, _('Please type a question.'));
      if (v.error) { setFieldError('question', v.error); $('question').focus(); return; }
      setFieldError('question', '');
      ask(v.text);
    });
    $('correction-form').addEventListener('submit', function (e) { e.preventDefault(); submitCorrection(); });
    submitOnEnter($('question'), function () { $('question-form').requestSubmit(); });
    submitOnEnter($('correction'), submitCorrection);
    $('question').addEventListener('input', function () { updateCounters(); setFieldError('question', ''); });
    $('correction').addEventListener('input', function () { updateCounters(); setFieldError('correction', ''); });

    $('btn-correct').addEventListener('click', function () { if (mode === 'verdict') sendVerdict('correct'); });
    $('btn-wrong').addEventListener('click', chooseWrong);
    $('btn-undo-wrong').addEventListener('click', undoWrong);

    $('image-button').addEventListener('click', openZoom);
    $('image').addEventListener('error', function () {
      if (!game.image) return;
      imageBanner = true;
      banner(_('The picture did not load.'), 'error', function () { imageBanner = false; $('image').src = game.image.url; });
    });
    $('image').addEventListener('load', function () { if (imageBanner) { imageBanner = false; bannerClear('error'); } });
    $('zoom').addEventListener('click', closeZoom);
    document.addEventListener('keydown', function (e) { if (e.key === 'Escape') closeZoom(); });

    var chips = $('examples');
    (cfg.examples || []).forEach(function (text) {
      var b = el('button', null, text);
      b.type = 'button';
      b.addEventListener('click', function () {
        $('question').value = text; updateCounters(); $('question').focus();
      });
      chips.appendChild(b);
    });

    // Coming back to a tab or app after a while: resync the timer with the server.
    document.addEventListener('visibilitychange', function () {
      if (!document.hidden && screen === 'game' && mode !== 'busy' && mode !== 'ended') refreshState();
    });
  }

  // ------------------------------------------------------------------ boot
  async function loadInitial() {
    try {
      if (/(^|[?&])mode=duels(&|$)/.test(window.location.search)) return showDuels();   // the bot's /duel button
      var state = await api('GET', '/api/sessions/current');
      if (state && state.status === 'playing') return applyState(state, { focus: false });
      showHome();
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return showHome();
      if (err instanceof ApiError && err.status === 401) return handleError(err);
      show('loading');
      handleError(err, loadInitial);
    }
  }

  async function boot() {
    wire();
    themeFromUrl();
    var tag = $('tg-script');
    if (window.Telegram && window.Telegram.WebApp) attachTelegram();
    else if (tag) tag.addEventListener('load', attachTelegram);

    initData = readInitData();
    if (!initData) {
      // Telegram clients pass initData in the URL; give the script a moment in case it knows more.
      await waitForTelegram(TG_WAIT_MS);
      initData = readInitData();
    }
    if (!initData) return showAuth();
    if (switchLanguage()) return;
    await loadInitial();
  }

  // The page came in the language the URL (?lang=) or the browser asked for; the
  // player's Telegram language_code wins once: reload in it when we have it.
  function switchLanguage() {
    var wanted = '';
    try { wanted = (JSON.parse(new URLSearchParams(initData).get('user') || '{}').language_code || ''); } catch (e) { return false; }
    wanted = String(wanted).toLowerCase().split(/[-_]/)[0];
    var supported = L.supported || ['en'];
    if (supported.indexOf(wanted) < 0) wanted = 'en';
    var query = new URLSearchParams(location.search);
    if (wanted === L.lang || query.get('lang')) return false;
    query.set('lang', wanted);
    location.replace(location.pathname + '?' + query.toString() + location.hash);
    return true;
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
