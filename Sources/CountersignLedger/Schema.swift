import Foundation

/// The ledger's versioned migrations. `countersign ledger migrate` applies the missing ones, in
/// order, each in its own transaction, as the owner role; `schema_migrations` records them.
///
/// Tables:
/// - `entries`: the append-only log, one signed statement per row, gapless 0-based `idx`.
/// - `merkle_nodes`: every complete subtree of level ≥ 1 of the RFC 6962 tree, keyed by the
///   index of its last leaf and its level, written in the same statement as the entries that
///   complete them (level 0 is `entries.leaf_hash`). A proof reads O(log n) rows by primary key.
/// - `checkpoints`: signed C2SP checkpoints (DSSE over the checkpoint text), one per tree size.
/// - `lease`: the single mutable row: holder, epoch and expiry (database clock) of the writer.
///
/// Every entry and checkpoint carries the writer's epoch; a trigger
/// rejects it unless it equals the lease's epoch and the lease has not expired. Triggers refuse
/// UPDATE, DELETE and TRUNCATE on the ledger tables and are `ENABLE ALWAYS`, so that
/// `session_replication_role = replica` does not switch them off. A superuser or the table owner
/// can still bypass all of this: that is what the Merkle tree and `ledger verify` are for.
enum Schema {
    struct Migration: Sendable {
        var version: Int
        var name: String
        var sql: String
    }

    /// The migrations, with the writer and reader role names filled in (quoted identifiers).
    static func migrations(writer: String, reader: String) -> [Migration] {
        func fill(_ sql: String) -> String {
            sql.replacingOccurrences(of: "{writer}", with: quoteIdentifier(writer))
                .replacingOccurrences(of: "{reader}", with: quoteIdentifier(reader))
        }
        return [
            Migration(version: 1, name: "ledger tables, append-only triggers, lease fence", sql: fill(v1)),
            Migration(version: 2, name: "index of the keyring's key events", sql: v2),
            Migration(version: 3, name: "one decision per request id", sql: v3),
            Migration(version: 4, name: "append checks once per statement", sql: v4),
            Migration(version: 5, name: "request id index without decisions", sql: v5),
        ]
    }

    /// A SQL identifier in double quotes, inner quotes doubled.
    static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    static let createMigrationsTable = """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )
        """

    static let v1 = #"""
        CREATE TABLE lease (
            id smallint PRIMARY KEY CHECK (id = 1),
            holder text NOT NULL,
            epoch bigint NOT NULL CHECK (epoch >= 0),
            expires_at timestamptz NOT NULL
        );
        INSERT INTO lease (id, holder, epoch, expires_at) VALUES (1, '', 0, '-infinity');

        CREATE TABLE entries (
            idx bigint PRIMARY KEY CHECK (idx >= 0),
            kind text NOT NULL CHECK (kind IN ('decision', 'execution', 'override', 'key-event', 'refusal')),
            payload_type text NOT NULL,
            statement bytea NOT NULL,
            signature bytea NOT NULL,
            key_id text NOT NULL,
            agent text NOT NULL,
            owner text NOT NULL,
            request_id text,
            fingerprint bytea,
            epoch bigint NOT NULL,
            leaf_hash bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT entries_leaf_hash_matches CHECK (leaf_hash = sha256('\x00'::bytea || statement))
        );
        CREATE INDEX entries_request_id ON entries (request_id, kind, idx DESC) WHERE request_id IS NOT NULL;

        CREATE TABLE merkle_nodes (
            last_leaf bigint NOT NULL CHECK (last_leaf >= 0),
            level smallint NOT NULL CHECK (level BETWEEN 1 AND 63),
            hash bytea NOT NULL CHECK (length(hash) = 32),
            PRIMARY KEY (last_leaf, level)
        );

        CREATE TABLE checkpoints (
            tree_size bigint PRIMARY KEY CHECK (tree_size >= 0),
            root_hash bytea NOT NULL CHECK (length(root_hash) = 32),
            body bytea NOT NULL,
            payload_type text NOT NULL,
            signature bytea NOT NULL,
            key_id text NOT NULL,
            epoch bigint NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        -- Append-only: refuse every UPDATE, DELETE and TRUNCATE on the ledger tables.
        CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger table % is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$;

        -- The fence: an append must carry the current lease's epoch, and the lease must be live.
        CREATE FUNCTION ledger_check_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            current_epoch bigint;
            live boolean;
        BEGIN
            SELECT l.epoch, l.expires_at > now() INTO current_epoch, live FROM lease l WHERE l.id = 1;
            IF NEW.epoch IS DISTINCT FROM current_epoch THEN
                RAISE EXCEPTION 'stale epoch % (lease epoch is %)', NEW.epoch, current_epoch
                    USING ERRCODE = 'CS001';
            END IF;
            IF NOT live THEN
                RAISE EXCEPTION 'lease of epoch % has expired', NEW.epoch USING ERRCODE = 'CS002';
            END IF;
            RETURN NEW;
        END $$;

        -- Gapless: a new entry's index is the previous maximum + 1 (0 for the first). Rows inserted
        -- earlier by the same statement are visible here, so a batch in one INSERT works.
        CREATE FUNCTION ledger_check_contiguous() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            expected bigint;
        BEGIN
            SELECT coalesce(max(e.idx) + 1, 0) INTO expected FROM entries e;
            IF NEW.idx <> expected THEN
                RAISE EXCEPTION 'entry index % is not the next index %', NEW.idx, expected
                    USING ERRCODE = 'CS003';
            END IF;
            RETURN NEW;
        END $$;

        -- A checkpoint may not claim more entries than exist.
        CREATE FUNCTION ledger_check_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            size bigint;
        BEGIN
            SELECT coalesce(max(e.idx) + 1, 0) INTO size FROM entries e;
            IF NEW.tree_size > size THEN
                RAISE EXCEPTION 'checkpoint size % is above the ledger size %', NEW.tree_size, size
                    USING ERRCODE = 'CS004';
            END IF;
            RETURN NEW;
        END $$;

        -- The lease row may be updated (renewal, takeover) but never deleted, and its epoch never goes back.
        CREATE FUNCTION ledger_check_lease() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.epoch < OLD.epoch OR NEW.id <> OLD.id THEN
                RAISE EXCEPTION 'lease epoch may not go back (% -> %)', OLD.epoch, NEW.epoch
                    USING ERRCODE = 'CS001';
            END IF;
            RETURN NEW;
        END $$;

        CREATE TRIGGER entries_00_contiguous BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION ledger_check_contiguous();
        CREATE TRIGGER entries_01_epoch BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION ledger_check_epoch();
        CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
        CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

        CREATE TRIGGER merkle_nodes_append_only BEFORE UPDATE OR DELETE ON merkle_nodes FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
        CREATE TRIGGER merkle_nodes_no_truncate BEFORE TRUNCATE ON merkle_nodes FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

        CREATE TRIGGER checkpoints_00_size BEFORE INSERT ON checkpoints FOR EACH ROW EXECUTE FUNCTION ledger_check_checkpoint();
        CREATE TRIGGER checkpoints_01_epoch BEFORE INSERT ON checkpoints FOR EACH ROW EXECUTE FUNCTION ledger_check_epoch();
        CREATE TRIGGER checkpoints_append_only BEFORE UPDATE OR DELETE ON checkpoints FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
        CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

        CREATE TRIGGER lease_00_monotonic BEFORE UPDATE ON lease FOR EACH ROW EXECUTE FUNCTION ledger_check_lease();
        CREATE TRIGGER lease_no_delete BEFORE DELETE ON lease FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
        CREATE TRIGGER lease_no_truncate BEFORE TRUNCATE ON lease FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

        ALTER TABLE entries ENABLE ALWAYS TRIGGER entries_00_contiguous;
        ALTER TABLE entries ENABLE ALWAYS TRIGGER entries_01_epoch;
        ALTER TABLE entries ENABLE ALWAYS TRIGGER entries_append_only;
        ALTER TABLE entries ENABLE ALWAYS TRIGGER entries_no_truncate;
        ALTER TABLE merkle_nodes ENABLE ALWAYS TRIGGER merkle_nodes_append_only;
        ALTER TABLE merkle_nodes ENABLE ALWAYS TRIGGER merkle_nodes_no_truncate;
        ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER checkpoints_00_size;
        ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER checkpoints_01_epoch;
        ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER checkpoints_append_only;
        ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER checkpoints_no_truncate;
        ALTER TABLE lease ENABLE ALWAYS TRIGGER lease_00_monotonic;
        ALTER TABLE lease ENABLE ALWAYS TRIGGER lease_no_delete;
        ALTER TABLE lease ENABLE ALWAYS TRIGGER lease_no_truncate;

        -- Privileges: nothing by default; the writer may INSERT and SELECT the ledger tables and
        -- UPDATE only the lease row; the reader may SELECT.
        REVOKE ALL ON lease, entries, merkle_nodes, checkpoints, schema_migrations FROM PUBLIC;
        GRANT SELECT, INSERT ON entries, merkle_nodes, checkpoints TO {writer};
        GRANT SELECT, UPDATE (holder, epoch, expires_at) ON lease TO {writer};
        GRANT SELECT ON schema_migrations TO {writer};
        GRANT SELECT ON lease, entries, merkle_nodes, checkpoints, schema_migrations TO {reader};
        """#

    /// The keyring reads its key events at every start (``LedgerKeyEventLog``): a partial index
    /// over the few `key-event` rows instead of a scan of the whole ledger.
    static let v2 = """
        CREATE INDEX entries_key_events ON entries (idx) WHERE kind = 'key-event';
        """

    /// Nothing is decided twice: the database refuses a second `decision` entry for a request id
    /// (``LedgerError/Code/exists``). The decision service relies on it for idempotency, instead
    /// of looking each request id up before deciding.
    static let v3 = """
        CREATE UNIQUE INDEX \(oneDecisionPerRequest) ON entries (request_id) WHERE kind = 'decision';
        """

    /// The fence and the gapless check of `entries`, once per INSERT statement over the rows it
    /// inserted (a transition table) instead of two PL/pgSQL calls per row: a batch of n entries
    /// costs one check, not 2n. Measured with 8 concurrent writers (batches of about 8), appends
    /// went from about 10,100 to 12,600 entries/s.
    ///
    /// Same rules as before: every new row carries the live lease's epoch (CS001, CS002), and the
    /// new indices are exactly the next ones: the smallest follows the largest committed index
    /// below it, and they are as many as their span (the primary key rules out duplicates), so the
    /// set stays 0…n-1 (CS003). The check runs after the rows are in, in a fresh snapshot under
    /// READ COMMITTED: a concurrent writer's rows count only once committed. `ENABLE ALWAYS` as
    /// every ledger trigger; it fires for COPY as well.
    static let v4 = #"""
        DROP TRIGGER entries_00_contiguous ON entries;
        DROP TRIGGER entries_01_epoch ON entries;
        DROP FUNCTION ledger_check_contiguous();

        CREATE FUNCTION ledger_check_append() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            current_epoch bigint;
            live boolean;
            first_idx bigint;
            last_idx bigint;
            n bigint;
            stale bigint;
            expected bigint;
        BEGIN
            SELECT l.epoch, l.expires_at > now() INTO current_epoch, live FROM lease l WHERE l.id = 1;
            SELECT min(a.idx), max(a.idx), count(*), min(a.epoch) FILTER (WHERE a.epoch IS DISTINCT FROM current_epoch)
                INTO first_idx, last_idx, n, stale FROM appended a;
            IF n = 0 THEN
                RETURN NULL;
            END IF;
            IF stale IS NOT NULL THEN
                RAISE EXCEPTION 'stale epoch % (lease epoch is %)', stale, current_epoch
                    USING ERRCODE = 'CS001';
            END IF;
            IF NOT live THEN
                RAISE EXCEPTION 'lease of epoch % has expired', current_epoch USING ERRCODE = 'CS002';
            END IF;
            SELECT coalesce(max(e.idx) + 1, 0) INTO expected FROM entries e WHERE e.idx < first_idx;
            IF first_idx <> expected THEN
                RAISE EXCEPTION 'entry index % is not the next index %', first_idx, expected
                    USING ERRCODE = 'CS003';
            END IF;
            IF last_idx - first_idx + 1 <> n THEN
                RAISE EXCEPTION 'entry indices % to % have gaps (% entries)', first_idx, last_idx, n
                    USING ERRCODE = 'CS003';
            END IF;
            RETURN NULL;
        END $$;

        CREATE TRIGGER entries_00_append AFTER INSERT ON entries REFERENCING NEW TABLE AS appended
            FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_append();
        ALTER TABLE entries ENABLE ALWAYS TRIGGER entries_00_append;
        """#

    /// Decisions leave the general request-id index: the unique index of migration 3 already finds
    /// a request's decision (``Ledger/latest(kind:requestID:)`` asks it with the kind spelled out),
    /// so a decision, most of the rows, now updates one request-id index instead of two. Refusals,
    /// executions and overrides keep theirs.
    static let v5 = """
        DROP INDEX entries_request_id;
        CREATE INDEX entries_request_id_other_kinds ON entries (request_id, kind, idx DESC)
            WHERE request_id IS NOT NULL AND kind <> 'decision';
        """

    /// The unique index behind ``LedgerError/Code/exists``.
    static let oneDecisionPerRequest = "entries_one_decision_per_request"
}
