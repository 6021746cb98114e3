"""The schema of the tables other modules keep on the store (the cost ledger, run-time
policy and the audit log; batch jobs), written once for SQLite; the PostgreSQL store
takes it through :func:`bot.pg_compat.postgres_ddl`."""

#: Team controls (bot.ledger, bot.audit); shared with the PostgreSQL store.
TEAM_SCHEMA = """
    CREATE TABLE ledger (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'refunded')),
        kind TEXT NOT NULL,
        platform TEXT NOT NULL,
        workspace TEXT NOT NULL,
        channel TEXT NOT NULL,
        thread TEXT NOT NULL,
        user_id TEXT NOT NULL,
        user_name TEXT NOT NULL,
        model TEXT NOT NULL,
        size TEXT NOT NULL,
        batch INTEGER NOT NULL DEFAULT 0,
        images INTEGER NOT NULL,
        reference_images INTEGER NOT NULL DEFAULT 0,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        thought_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL,
        day TEXT NOT NULL,
        created_at REAL NOT NULL,
        settled_at REAL
    );
    CREATE INDEX ledger_when ON ledger(created_at, state, images, cost_usd);
    CREATE INDEX ledger_user ON ledger(platform, user_id, created_at);
    CREATE INDEX ledger_workspace ON ledger(platform, workspace, created_at, state, images,
                                            cost_usd);
    CREATE INDEX ledger_place ON ledger(platform, workspace, channel, created_at, state,
                                        images, cost_usd);
    CREATE INDEX usage_turn ON usage(turn_id);
    CREATE TABLE policy_rules (
        scope TEXT PRIMARY KEY,
        rules TEXT NOT NULL,
        updated_by TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        actor_name TEXT NOT NULL,
        platform TEXT NOT NULL,
        workspace TEXT NOT NULL,
        channel TEXT NOT NULL,
        thread TEXT NOT NULL,
        summary TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX audit_when ON audit(at);
"""
#: Batch API jobs (bot.batch_store); shared with the PostgreSQL store.
BATCH_SCHEMA = """
    CREATE TABLE batch_jobs (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL DEFAULT '',
        platform TEXT NOT NULL,
        workspace TEXT NOT NULL,
        channel TEXT NOT NULL,
        thread TEXT NOT NULL,
        author_id TEXT NOT NULL,
        author_name TEXT NOT NULL,
        model TEXT NOT NULL,
        options TEXT NOT NULL,
        refs TEXT NOT NULL DEFAULT '[]',
        remote_refs TEXT NOT NULL DEFAULT '[]',
        input TEXT NOT NULL DEFAULT 'inline',
        input_file TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        lease_until REAL NOT NULL DEFAULT 0,
        polls INTEGER NOT NULL DEFAULT 0,
        next_poll_at REAL NOT NULL DEFAULT 0,
        results_at REAL,
        delivered_at REAL,
        posts TEXT NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX batch_jobs_state ON batch_jobs(state, next_poll_at);
    CREATE INDEX batch_jobs_thread ON batch_jobs(platform, workspace, channel, thread);
    CREATE TABLE batch_lines (
        job_id TEXT NOT NULL REFERENCES batch_jobs(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        prompt TEXT NOT NULL,
        options TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        result TEXT NOT NULL DEFAULT '{}',
        images INTEGER NOT NULL DEFAULT 0,
        cost REAL NOT NULL DEFAULT 0,
        posted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job_id, number)
    );
"""

#: Variations (bot.variations): every candidate's model Content, for Use.
VARIATIONS_SCHEMA = """
    CREATE TABLE turn_candidates (
        turn_id TEXT NOT NULL REFERENCES turns(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        content TEXT NOT NULL,
        PRIMARY KEY (turn_id, number)
    );
    """
