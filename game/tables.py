"""The stored data (SPEC §1.4), as SQLAlchemy Core tables. Alembic migrations in
game/migrations/ create exactly these; times are integer epoch milliseconds so
SQLite and PostgreSQL compare them the same way. Nothing here is ever deleted by
the game itself."""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)

metadata = MetaData()

players = Table(
    "players",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("player_key", String(64), nullable=False, unique=True),  # keyed hash of the Telegram id
    Column("display_name", String(128)),
    Column("referrer", String(64)),          # deep-link parameter of /start
    Column("muted", Boolean, nullable=False, default=False),  # admin or anti-gaming mute
    Column("chat_id", BigInteger),           # for bot replies / broadcast; not the user id
    Column("created_at", BigInteger, nullable=False),
    Column("banned_at", BigInteger),         # set by an admin's /ban: no play, no points (game/limits.py)
    Column("ban_reason", String(200)),
)

images = Table(
    "images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("opaque_id", String(32), nullable=False, unique=True),  # the only id a client sees
    Column("pool", String(64), nullable=False),          # e.g. "generated", "imported:<name>"
    Column("source_name", String(512)),                  # original file name: never exposed
    Column("sha256", String(64), nullable=False, unique=True),
    Column("mime", String(32), nullable=False),
    Column("content", LargeBinary, nullable=False),      # re-encoded, EXIF-free bytes
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("complexity", String(16)),                    # "simple" | "complex" | "simple:<style>" | None
    Column("scene_json", Text),                          # ground-truth scene graph, when known
    Column("annotations_json", Text),                    # imported annotations, when given
    Column("model_accuracy", Float),                     # measured accuracy of the model on this image
    Column("reliable", Boolean, nullable=False, default=False),  # the reliable pool (SPEC §1.2)
    Column("created_at", BigInteger, nullable=False),
    # The three ways into the reliable pool (SPEC §1.2) besides a ground-truth measurement:
    # declared by the operator (`gap images import --reliable`), or measured by the crowd
    # (`gap evaluate`: the posterior of the model's accuracy from trusted players' verdicts).
    Column("declared_reliable", Boolean, nullable=False, default=False, server_default=false()),
    Column("crowd_verdicts", Integer),                   # counting verdicts on untainted answers
    Column("crowd_accuracy", Float),                     # posterior mean of the model's accuracy
    Column("crowd_lower", Float),                        # its lower credible bound
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(32), primary_key=True),          # opaque random id
    Column("player_id", Integer, ForeignKey("players.id"), nullable=False),
    Column("status", String(16), nullable=False),        # "playing" | "finished"
    Column("current_index", Integer, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger),
    Index("ix_sessions_player_status", "player_id", "status"),
    # At most one active session per player, even with several web workers.
    Index("ux_sessions_one_playing", "player_id", unique=True,
          sqlite_where=text("status = 'playing'"), postgresql_where=text("status = 'playing'")),
)

session_images = Table(
    "session_images",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", String(32), ForeignKey("sessions.id"), nullable=False),
    Column("position", Integer, nullable=False),         # 0..9
    Column("image_id", Integer, ForeignKey("images.id"), nullable=False),
    Column("tainted", Boolean, nullable=False),
    Column("served_at", BigInteger),
    Column("deadline_at", BigInteger),                   # absolute, set once when first served
    Column("ended_at", BigInteger),
    Column("end_reason", String(16)),                    # "wrong" | "timeout" | "done"
    UniqueConstraint("session_id", "position"),
)

answers = Table(
    "answers",
    metadata,
    Column("id", String(32), primary_key=True),          # opaque random id
    Column("session_id", String(32), ForeignKey("sessions.id"), nullable=False),
    Column("session_image_id", Integer, ForeignKey("session_images.id"), nullable=False),
    Column("player_id", Integer, ForeignKey("players.id"), nullable=False),
    Column("image_id", Integer, ForeignKey("images.id"), nullable=False),
    Column("question", Text, nullable=False),
    Column("question_type", String(16)),
    Column("honest_answer", Text, nullable=False),
    Column("served_answer", Text, nullable=False),
    Column("tainted", Boolean, nullable=False),
    Column("strategy", String(16)),
    Column("model_id", String(256), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("verdict", String(8)),                        # None | "correct" | "wrong"
    Column("correction", Text),
    Column("points", Integer, nullable=False, default=0),
    Column("asked_at", BigInteger, nullable=False),
    Column("judged_at", BigInteger),
    Index("ix_answers_session", "session_id"),
    Index("ix_answers_player", "player_id"),
    Index("ix_answers_session_image", "session_image_id"),
    # At most one answer awaiting a verdict per session image (ask, judge, ask again).
    Index("ux_answers_one_pending", "session_image_id", unique=True,
          sqlite_where=text("verdict IS NULL"), postgresql_where=text("verdict IS NULL")),
)

# Idempotency: the first response to (player, request_id) is stored and replayed.
requests = Table(
    "requests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("player_id", Integer, ForeignKey("players.id"), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("response_json", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("player_id", "request_id"),
)

# Points ledger: every award (session play, confirmed-find bonus) is a row, so
# weekly and all-time leaderboards are sums over time ranges.
points_ledger = Table(
    "points_ledger",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("player_id", Integer, ForeignKey("players.id"), nullable=False),
    Column("answer_id", String(32), ForeignKey("answers.id")),
    Column("reason", String(32), nullable=False),        # "tainted_catch" | "false_alarm" | "find_bonus"
    Column("points", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_points_created", "created_at"),
    Index("ix_points_player", "player_id"),
    # An answer is scored once per reason, whatever retries or workers do.
    UniqueConstraint("answer_id", "reason", name="uq_points_answer_reason"),
)

# Peer validation (SPEC §3.3): other players' votes on a find (a Wrong verdict with a
# correction on an untainted image). agrees = "the answer is wrong". One vote per
# validator and find; votes of muted players are kept but do not count (game/validation.py).
validations = Table(
    "validations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("answer_id", String(32), ForeignKey("answers.id"), nullable=False),   # the find
    Column("validator_player_id", Integer, ForeignKey("players.id"), nullable=False),
    Column("agrees", Boolean, nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("answer_id", "validator_player_id", name="uq_validations_answer_validator"),
    Index("ix_validations_validator", "validator_player_id"),
)

# A voted find's posterior after its validators' votes (written by `gap evaluate`,
# game.validation.store_vote_posteriors); exports read it instead of the cell posterior.
validation_posteriors = Table(
    "validation_posteriors",
    metadata,
    Column("answer_id", String(32), ForeignKey("answers.id"), primary_key=True),
    Column("prior", Float, nullable=False),        # the find's posterior before the votes
    Column("posterior", Float, nullable=False),    # after the counting votes
    Column("votes", Integer, nullable=False),      # counting votes used
    Column("updated_at", BigInteger, nullable=False),
)

# Abuse limits (game/limits.py): hits per subject ("question:p:12", "session:o:203.0.113.0/24",
# "update:c:4711") in one fixed time window; shared by every web worker.
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("bucket", String(160), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("hits", Integer, nullable=False),
)

# The bot's chat-side state (game/chat_state.py): shared by every worker, unlike a bot process's memory.
chat_state = Table(
    "chat_state",
    metadata,
    Column("subject", String(80), primary_key=True),   # "player:<id>" or "user:<player key>"
    Column("name", String(64), primary_key=True),      # "correction_for", "broadcast:<token>"
    Column("value", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Networks (IPv4 /24, IPv6 /48) new sessions came from, kept only while network gating is on
# (GAP_GATE_ACCOUNTS_PER_NETWORK): many accounts from one network play gold-only sessions.
player_networks = Table(
    "player_networks",
    metadata,
    Column("network", String(64), primary_key=True),
    Column("player_id", Integer, ForeignKey("players.id"), primary_key=True),
    Column("last_seen", BigInteger, nullable=False),
    Index("ix_player_networks_seen", "network", "last_seen"),
)

# Model rounds (SPEC §3.2, Dynabench): each promotion of a model (a fine-tuned adapter, usually)
# is a round; every web worker follows the latest one without a restart. Answers carry the
# model id of the model that answered them, so each round's error rate is read from them.
model_rounds = Table(
    "model_rounds",
    metadata,
    Column("id", Integer, primary_key=True),          # the round number
    Column("spec", String(1000), nullable=False),     # what GAP_MODEL would say: a directory or openai:<url>
    Column("promoted_by", String(64)),                # "cli" or "admin <telegram id>"
    Column("promoted_at", BigInteger, nullable=False),
    Column("model_id", String(128)),                  # set by the first worker that serves it
    Column("error", Text),                            # the last load failure, if any
    Column("updated_at", BigInteger, nullable=False),
)
