"""The Telegram bot (python-telegram-bot 22, async), living inside the web server's process.

- bot/runtime.py — the PTB Application's life: webhook (GAP_WEBHOOK_URL) or long
  polling, background start-up, retried set-up calls, clean stop.
- bot/handlers/ — /start /help /score, play in chat (/play), admin commands, fallbacks.
- webapp/telegram.py — the webhook route; gap/app.py (the composition root) builds the runtime and hands it to the web app.

Run it with `gap serve` and GAP_BOT_TOKEN set (GAP_PUBLIC_URL: the https origin of
the Mini App for the web_app buttons; GAP_ADMIN_IDS: who may use admin commands).
"""
