/**
 * The SQL side of the control plane: the schema's migrations and the statements the supervisor side runs.
 *
 * Everything is built from a validated schema name, so identifiers are spliced in as text; values always
 * travel as parameters.
 *
 * @internal
 */

/** A schema name we can splice into SQL unquoted-equivalent: lowercase, at most 54 characters. */
const schemaPattern = /^[a-z_][a-z0-9_]{0,53}$/

/** `undefined` when `schema` is usable, else why not. */
export const checkSchema = (schema: string): string | undefined =>
  schemaPattern.test(schema)
    ? undefined
    : `invalid schema name "${schema}": use 1 to 54 lowercase letters, digits and underscores, not starting with a digit`

/** `undefined` when `channel` can be LISTENed to (PostgreSQL truncates identifiers past 63 bytes), else why not. */
export const checkChannel = (channel: string): string | undefined => {
  const bytes = new TextEncoder().encode(channel).length
  return bytes > 0 && bytes <= 63 ? undefined : `invalid channel name "${channel}": use 1 to 63 bytes`
}

/** The role granted EXECUTE on the functions: `<schema>_launcher` (`bgworker_launcher` by default). */
export const launcherRole = (schema: string): string => `${schema}_launcher`

/** The first key of the supervisor's advisory lock ("bgwr"); the second is the schema's oid. */
export const lockClassId = 0x62677772

/**
 * Whether a supervisor is attached: the session recorded in `_config` holds the advisory lock. A view
 * condition and a function body (used from SECURITY DEFINER functions and views, so no EXECUTE is needed).
 */
const attached = (s: string) =>
  `EXISTS (
    SELECT 1 FROM pg_catalog.pg_locks l, ${s}._config c
    WHERE l.locktype = 'advisory' AND l.granted AND l.pid = c.supervisor_pid
      AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
      AND l.classid = ${lockClassId}::oid
      AND l.objid = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = '${s}')
      AND l.objsubid = 2
  )`

/** `SECURITY DEFINER` functions run with a search path nobody else can write to. */
const definer = "LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp"

/**
 * The statements of migration 1, in order (one statement each: the extended protocol takes one at a time).
 * A change to the schema is a new migration appended after this one, never an edit of it.
 */
export const init = (s: string): ReadonlyArray<string> => {
  const role = launcherRole(s)
  return [
    // --- the launcher role (cluster-wide: another database may have created it, or be creating it now) ---
    `DO $do$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = '${role}') THEN
    BEGIN
      CREATE ROLE ${role} NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL;
    END;
  END IF;
END
$do$`,
    `REVOKE ALL ON SCHEMA ${s} FROM PUBLIC`,
    // Visible to everyone, so that a refusal names the function or table; every object below is closed.
    `GRANT USAGE ON SCHEMA ${s} TO PUBLIC`,

    // --- private tables ---
    `CREATE TABLE ${s}._config (
  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  channel text NOT NULL,
  supervisor_id text,
  supervisor_pid integer,
  attached_at timestamptz
)`,
    `INSERT INTO ${s}._config (channel) VALUES ('${s}')`,
    `CREATE TABLE ${s}._requests (
  id bigserial PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('launch', 'terminate', 'set_latch', 'reload')),
  library text,
  function text,
  arg jsonb,
  name text,
  type text,
  target bigint REFERENCES ${s}._requests (id),
  requested_by text NOT NULL,
  requested_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  requested_xact xid8 NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
  state text NOT NULL DEFAULT 'requested'
    CHECK (state IN ('requested', 'launched', 'refused', 'no_slot', 'done')),
  processed_at timestamptz,
  supervisor_id text,
  handle text,
  pid integer,
  status text CHECK (status IN ('not yet started', 'started', 'stopped', 'postmaster died')),
  error text,
  CHECK ((kind = 'launch') = (library IS NOT NULL AND function IS NOT NULL)),
  CHECK ((kind IN ('terminate', 'set_latch')) = (target IS NOT NULL))
)`,
    `CREATE INDEX ON ${s}._requests (id) WHERE state = 'requested'`,
    `CREATE INDEX ON ${s}._requests (supervisor_id, handle) WHERE kind = 'launch'`,
    `CREATE TABLE ${s}._activity (
  supervisor_id text NOT NULL,
  worker_handle text NOT NULL,
  slot integer NOT NULL,
  pid integer,
  name text NOT NULL,
  backend_type text NOT NULL,
  origin text NOT NULL,
  registration text NOT NULL,
  state text,
  query text NOT NULL,
  backend_start timestamptz,
  state_change timestamptz,
  wait_event_type text,
  wait_event text,
  restart_count integer NOT NULL,
  last_exit_kind text,
  last_exit_message text,
  last_exit_at timestamptz,
  next_restart_at timestamptz,
  given_up_reason text,
  PRIMARY KEY (supervisor_id, worker_handle)
)`,
    `CREATE TABLE ${s}._settings (
  supervisor_id text NOT NULL,
  name text NOT NULL,
  setting text,
  unit text,
  category text NOT NULL,
  short_desc text NOT NULL,
  extra_desc text,
  context text NOT NULL,
  vartype text NOT NULL,
  source text NOT NULL,
  min_val text,
  max_val text,
  enumvals text[],
  boot_val text,
  reset_val text,
  sourcefile text,
  sourceline integer,
  pending_restart boolean NOT NULL,
  PRIMARY KEY (supervisor_id, name)
)`,
    `REVOKE ALL ON ${s}._config, ${s}._requests, ${s}._activity, ${s}._settings FROM PUBLIC`,
    `REVOKE ALL ON SEQUENCE ${s}._requests_id_seq FROM PUBLIC`,

    // --- helpers (not callable from outside: EXECUTE is revoked below) ---
    // The role the caller acts as: SET ROLE's role, else the session user. SECURITY DEFINER changes
    // current_user, not the "role" setting, so this still names the caller inside the functions below.
    `CREATE FUNCTION ${s}._caller() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT CASE WHEN current_setting('role') = 'none' THEN session_user::text ELSE current_setting('role') END $$`,
    `CREATE FUNCTION ${s}._attached() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT ${attached(s)} $$`,
    `CREATE FUNCTION ${s}._notify(request bigint) RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_notify((SELECT channel FROM ${s}._config), request::text) $$`,
    // The launch row behind a handle, if the caller may act on it: like pg_terminate_backend, the caller
    // needs the privileges of the role that launched it, or of pg_signal_backend.
    `CREATE FUNCTION ${s}._handle(handle bigint, action text) RETURNS ${s}._requests
${definer}
AS $$
DECLARE
  r ${s}._requests;
  caller text := ${s}._caller();
BEGIN
  SELECT * INTO r FROM ${s}._requests WHERE id = $1 AND kind = 'launch';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'background worker handle % does not exist', handle
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A handle is the value returned by ${s}.launch.';
  END IF;
  IF NOT ((EXISTS (SELECT FROM pg_roles WHERE rolname = r.requested_by)
           AND pg_has_role(caller, r.requested_by, 'USAGE'))
          OR pg_has_role(caller, 'pg_signal_backend', 'USAGE')) THEN
    RAISE EXCEPTION 'permission denied to % background worker', action
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('Only roles with privileges of the role "%s" that launched it, or with privileges of the "pg_signal_backend" role, may %s it.', r.requested_by, action);
  END IF;
  RETURN r;
END
$$`,

    // --- the API ---
    `CREATE FUNCTION ${s}.launch(library text, function text, arg jsonb DEFAULT NULL, name text DEFAULT NULL,
  type text DEFAULT NULL) RETURNS bigint
${definer}
AS $$
DECLARE
  request bigint;
BEGIN
  IF $1 IS NULL OR $2 IS NULL THEN
    RAISE EXCEPTION 'library and function must not be null' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  INSERT INTO ${s}._requests (kind, library, function, arg, name, type, requested_by)
    VALUES ('launch', $1, $2, $3, $4, $5, ${s}._caller())
    RETURNING id INTO request;
  PERFORM ${s}._notify(request);
  RETURN request;
END
$$`,
    `CREATE FUNCTION ${s}.wait_for_startup(handle bigint, timeout interval DEFAULT '10 seconds') RETURNS integer
${definer}
AS $$
DECLARE
  r ${s}._requests;
  deadline timestamptz := clock_timestamp() + timeout;
BEGIN
  r := ${s}._handle(handle, 'wait for');
  IF r.state = 'requested' AND r.requested_xact = pg_current_xact_id_if_assigned() THEN
    RAISE EXCEPTION 'cannot wait for a background worker launched in the same transaction'
      USING ERRCODE = 'active_sql_transaction',
            HINT = 'The launch takes effect when the transaction commits: call ${s}.wait_for_startup after COMMIT.';
  END IF;
  LOOP
    SELECT * INTO r FROM ${s}._requests WHERE id = $1;
    IF r.state = 'no_slot' THEN
      RETURN NULL;
    ELSIF r.state = 'refused' OR (r.state = 'launched' AND r.status = 'stopped') THEN
      RAISE EXCEPTION 'could not start background process'
        USING ERRCODE = 'insufficient_resources',
              DETAIL = coalesce(r.error, 'The worker stopped before it was seen running.'),
              HINT = 'More details may be available in the server log.';
    ELSIF r.state = 'launched' AND r.status = 'started' THEN
      RETURN r.pid;
    ELSIF r.status = 'postmaster died' OR NOT ${s}._attached() THEN
      RAISE EXCEPTION 'cannot start background processes without postmaster'
        USING ERRCODE = 'insufficient_resources',
              HINT = 'Kill all remaining database processes and restart the database.';
    ELSIF clock_timestamp() >= deadline THEN
      RAISE EXCEPTION 'background worker handle % did not start within %', handle, timeout
        USING ERRCODE = 'query_canceled',
              DETAIL = CASE WHEN r.state = 'requested' THEN 'The request has not been processed.'
                            ELSE 'The worker is registered but not yet started.' END;
    END IF;
    PERFORM pg_sleep(0.005);
  END LOOP;
END
$$`,
    `CREATE FUNCTION ${s}.terminate(handle bigint) RETURNS void
${definer}
AS $$
DECLARE
  r ${s}._requests := ${s}._handle(handle, 'terminate');
  request bigint;
BEGIN
  INSERT INTO ${s}._requests (kind, target, requested_by) VALUES ('terminate', r.id, ${s}._caller())
    RETURNING id INTO request;
  PERFORM ${s}._notify(request);
END
$$`,
    `CREATE FUNCTION ${s}.set_latch(handle bigint) RETURNS void
${definer}
AS $$
DECLARE
  r ${s}._requests := ${s}._handle(handle, 'set the latch of');
  request bigint;
BEGIN
  INSERT INTO ${s}._requests (kind, target, requested_by) VALUES ('set_latch', r.id, ${s}._caller())
    RETURNING id INTO request;
  PERFORM ${s}._notify(request);
END
$$`,
    `CREATE FUNCTION ${s}.reload() RETURNS void
${definer}
AS $$
DECLARE
  request bigint;
BEGIN
  INSERT INTO ${s}._requests (kind, requested_by) VALUES ('reload', ${s}._caller())
    RETURNING id INTO request;
  PERFORM ${s}._notify(request);
END
$$`,

    // --- views: empty while no supervisor is attached ---
    `CREATE VIEW ${s}.activity AS
SELECT a.pid, a.name, a.backend_type, a.origin, a.registration, a.state, a.query, a.backend_start,
       a.state_change, a.wait_event_type, a.wait_event, a.restart_count, a.last_exit_kind,
       a.last_exit_message, a.last_exit_at, a.next_restart_at, a.given_up_reason,
       r.id AS handle, a.worker_handle, r.requested_by
FROM ${s}._activity a
JOIN ${s}._config c ON c.supervisor_id = a.supervisor_id
LEFT JOIN ${s}._requests r ON r.kind = 'launch' AND r.supervisor_id = a.supervisor_id AND r.handle = a.worker_handle
WHERE ${attached(s)}
ORDER BY a.slot`,
    `CREATE VIEW ${s}.settings AS
SELECT g.name, g.setting, g.unit, g.category, g.short_desc, g.extra_desc, g.context, g.vartype, g.source,
       g.min_val, g.max_val, g.enumvals, g.boot_val, g.reset_val, g.sourcefile, g.sourceline, g.pending_restart
FROM ${s}._settings g
JOIN ${s}._config c ON c.supervisor_id = g.supervisor_id
WHERE ${attached(s)}
ORDER BY g.name`,

    // --- privileges ---
    `REVOKE ALL ON ALL FUNCTIONS IN SCHEMA ${s} FROM PUBLIC`,
    `GRANT EXECUTE ON FUNCTION ${s}.launch(text, text, jsonb, text, text), ${s}.wait_for_startup(bigint, interval),
  ${s}.terminate(bigint), ${s}.set_latch(bigint), ${s}.reload() TO ${role}`,
    `GRANT SELECT ON ${s}.activity TO ${role}, pg_read_all_stats`,
    `GRANT SELECT ON ${s}.settings TO ${role}, pg_read_all_settings`
  ]
}

// --- statements of the supervisor side ---

/** Takes the lock without waiting; one row, `locked`. */
export const tryLock = (s: string) =>
  `SELECT pg_catalog.pg_try_advisory_lock(${lockClassId}, oid::int4) AS locked FROM pg_catalog.pg_namespace WHERE nspname = '${s}'`

/** Waits for the lock (a standby supervisor). */
export const lock = (s: string) =>
  `SELECT pg_catalog.pg_advisory_lock(${lockClassId}, oid::int4) FROM pg_catalog.pg_namespace WHERE nspname = '${s}'`

export const unlock = (s: string) =>
  `SELECT pg_catalog.pg_advisory_unlock(${lockClassId}, oid::int4) FROM pg_catalog.pg_namespace WHERE nspname = '${s}'`

/** Run on the lock's session once it holds the lock: records who is attached. `$1` is the supervisor id. */
export const attach = (s: string) =>
  `UPDATE ${s}._config SET supervisor_id = $1, supervisor_pid = pg_catalog.pg_backend_pid(), attached_at = pg_catalog.now()`

// --- migration 2: security ---

/** `BGW_MAXLEN`: `bgw_name`, `bgw_type` and `bgw_function_name` hold fewer bytes than this. */
export const bgwMaxLen = 96

/** `MAXPGPATH`: `bgw_library_name` holds fewer bytes than this. */
export const maxLibraryLen = 1024

/**
 * Launches whose argument is at most this many bytes of JSON text travel whole in their notification (the
 * fast path); larger ones are read from the table. NOTIFY payloads hold at most 8000 bytes.
 */
export const fastPathArgumentBytes = 2048

/**
 * The body of `launch` (migration 2) and of `_launch` (migration 3, which takes the caller as its first
 * argument, for a launch made on a session of the supervisor's on the caller's behalf): the same text.
 */
const tooLong = (field: string, column: string, limit: number, what: string) =>
  `IF octet_length(${column}) >= ${limit} THEN
    RAISE EXCEPTION 'background worker ${field} is too long (% bytes)', octet_length(${column})
      USING ERRCODE = 'string_data_right_truncation',
            DETAIL = '${what} holds at most ${limit - 1} bytes.';
  END IF;`

const launchFunction = (s: string, name: string, caller: string, withProcess = false) => {
  const callerParam = caller === "caller" ? "caller text, " : ""
  const p = (n: number) => `$${caller === "caller" ? n + 1 : n}`
  return `CREATE OR REPLACE FUNCTION ${s}.${name}(${callerParam}library text, function text, arg jsonb DEFAULT NULL, name text DEFAULT NULL,
  type text DEFAULT NULL${withProcess ? ", process text DEFAULT NULL" : ""}) RETURNS bigint
${definer}
AS $$
DECLARE
  request bigint;
  arg_bytes integer;
  max_bytes integer := (SELECT max_argument_bytes FROM ${s}._config);
  sup text;
  key text;
  chan text;
  body text;${withProcess ? `\n  target ${s}._processes;` : ""}
BEGIN
  IF ${p(1)} IS NULL OR ${p(2)} IS NULL THEN
    RAISE EXCEPTION 'library and function must not be null' USING ERRCODE = 'null_value_not_allowed';
  END IF;
  ${tooLong("library name", p(1), maxLibraryLen, "bgw_library_name (MAXPGPATH)")}
  ${tooLong("function name", p(2), bgwMaxLen, "bgw_function_name (BGW_MAXLEN)")}
  ${tooLong("name", p(4), bgwMaxLen, "bgw_name (BGW_MAXLEN)")}
  ${tooLong("type", p(5), bgwMaxLen, "bgw_type (BGW_MAXLEN)")}
  arg_bytes := octet_length(${p(3)}::text);
  IF arg_bytes > max_bytes THEN
    RAISE EXCEPTION 'background worker argument is too large (% bytes)', arg_bytes
      USING ERRCODE = 'program_limit_exceeded',
            DETAIL = format('The limit is %s bytes of JSON text (ControlPlane option maxArgumentBytes).', max_bytes),
            HINT = 'Pass a key to data the worker reads itself, rather than the data.';
  END IF;
  ${
    withProcess
      ? `target := ${s}._live_process(${p(6)});
  INSERT INTO ${s}._requests (kind, library, function, arg, arg_bytes, name, type, requested_by, process, assigned_to)
    VALUES ('launch', ${p(1)}, ${p(2)}, ${p(3)}, arg_bytes, ${p(4)}, ${p(5)}, ${caller}, target.id, target.id)
    RETURNING id INTO request;
  IF target.id IS NULL THEN
    SELECT c.supervisor_id, c.wake_key, c.channel INTO sup, key, chan FROM ${s}._config c WHERE ${s}._attached();
  ELSE
    -- A named process: its own key and channel (each process signs with a key of its own).
    sup := target.id; key := target.wake_key; chan := target.channel;
  END IF;
  IF sup IS NOT NULL AND key IS NOT NULL AND coalesce(arg_bytes, 0) <= ${fastPathArgumentBytes} THEN`
      : `INSERT INTO ${s}._requests (kind, library, function, arg, arg_bytes, name, type, requested_by)
    VALUES ('launch', ${p(1)}, ${p(2)}, ${p(3)}, arg_bytes, ${p(4)}, ${p(5)}, ${caller})
    RETURNING id INTO request;
  SELECT c.supervisor_id, c.wake_key, c.channel INTO sup, key, chan FROM ${s}._config c;
  IF sup IS NOT NULL AND key IS NOT NULL AND coalesce(arg_bytes, 0) <= ${fastPathArgumentBytes}
     AND ${s}._attached() THEN`
  }
    -- The fast path: claimed here for the attached supervisor (as its own claim would), and the whole
    -- request in the notification, signed with the key only that supervisor and the schema's owner know,
    -- so that it can start the worker without reading the row.
    UPDATE ${s}._requests SET state = 'processing', supervisor_id = sup, processed_at = pg_catalog.now()
      WHERE id = request;
    body := pg_catalog.jsonb_build_object('i', request, 's', sup, 'l', ${p(1)}, 'f', ${p(2)}, 'a', ${p(3)}, 'x', ${
    p(3)
  } IS NULL,
      'n', ${p(4)}, 't', ${p(5)}, 'r', ${caller}${withProcess ? ", 'p', target.id" : ""})::text;
    PERFORM pg_catalog.pg_notify(chan,
      pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(key || body, 'UTF8')), 'hex') || body);
  ELSE
    PERFORM ${s}._notify(request);
  END IF;
  RETURN request;
END
$$`
}

/** The default bound on a launch's argument, as text (`jsonb::text`): 1 MiB. */
export const defaultMaxArgumentBytes = 1024 * 1024

/** Whether `role` (a name) is a superuser; false for a role that does not exist. */
const isSuper = (role: string) => `coalesce((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = ${role}), false)`

/**
 * The statements of migration 2: limits at the SQL boundary (the name, type, library and function as in
 * PostgreSQL's `BackgroundWorker` struct, the argument by `_config.max_argument_bytes`), refusals that keep
 * their SQLSTATE, detail and hint for `wait_for_startup`, the role each worker runs as, PostgreSQL's rules
 * for signalling (`pg_signal_backend`, superusers' workers), and `reload()` taken from the launcher role.
 */
export const security = (s: string): ReadonlyArray<string> => {
  const role = launcherRole(s)
  return [
    `ALTER TABLE ${s}._config ADD COLUMN max_argument_bytes integer NOT NULL DEFAULT ${defaultMaxArgumentBytes}
  CHECK (max_argument_bytes > 0)`,
    // The attached supervisor's key for signed notifications (the fast path of launch).
    `ALTER TABLE ${s}._config ADD COLUMN wake_key text`,
    // States: 'processing' (claimed by the attached supervisor, in the claim's transaction) and
    // 'cancelled' (withdrawn with cancel() before any supervisor claimed it).
    `ALTER TABLE ${s}._requests DROP CONSTRAINT _requests_state_check`,
    `ALTER TABLE ${s}._requests ADD CONSTRAINT _requests_state_check
  CHECK (state IN ('requested', 'processing', 'launched', 'refused', 'no_slot', 'done', 'cancelled'))`,
    `CREATE INDEX ON ${s}._requests (processed_at) WHERE state <> 'requested'`,
    `CREATE INDEX ON ${s}._requests (supervisor_id) WHERE state = 'processing'`,
    // arg_bytes: the argument's size as JSON text, measured once by launch (NULL for rows stored otherwise).
    `ALTER TABLE ${s}._requests ADD COLUMN sqlstate text, ADD COLUMN detail text, ADD COLUMN hint text,
  ADD COLUMN run_as text, ADD COLUMN arg_bytes integer`,
    // Limits are checked in the calling session, before anything is stored: an oversized call fails at once.
    launchFunction(s, "launch", `${s}._caller()`),
    // pg_terminate_backend's rules (signalfuncs.c, pg_signal_backend): a superuser's worker only by a
    // superuser; others by roles with privileges of the worker's role, or of pg_signal_backend.
    `CREATE OR REPLACE FUNCTION ${s}._handle(handle bigint, action text) RETURNS ${s}._requests
${definer}
AS $$
DECLARE
  r ${s}._requests;
  caller text := ${s}._caller();
  target text;
BEGIN
  SELECT * INTO r FROM ${s}._requests WHERE id = $1 AND kind = 'launch';
  IF NOT FOUND THEN
    RAISE EXCEPTION 'background worker handle % does not exist', handle
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A handle is the value returned by ${s}.launch.';
  END IF;
  target := coalesce(r.run_as, r.requested_by);
  IF ${isSuper("target")} AND NOT ${isSuper("caller")} THEN
    RAISE EXCEPTION 'permission denied to % background worker', action
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('Only roles with the SUPERUSER attribute may %s background workers of roles with the SUPERUSER attribute.', action);
  END IF;
  IF NOT ((EXISTS (SELECT FROM pg_roles WHERE rolname = target) AND pg_has_role(caller, target, 'USAGE'))
          OR pg_has_role(caller, 'pg_signal_backend', 'USAGE')) THEN
    RAISE EXCEPTION 'permission denied to % background worker', action
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = format('Only roles with privileges of the role "%s" that the worker runs as, or with privileges of the "pg_signal_backend" role, may %s it.', target, action);
  END IF;
  RETURN r;
END
$$`,
    // A launch that is reported as failed never starts later: while its request is still queued (no
    // supervisor attached, or the timeout passed before one claimed it), the error says it is pending and
    // how to withdraw it; an error inside the caller's transaction cannot withdraw it itself (it would be
    // rolled back with the error).
    `CREATE OR REPLACE FUNCTION ${s}.wait_for_startup(handle bigint, timeout interval DEFAULT '10 seconds') RETURNS integer
${definer}
AS $$
DECLARE
  r ${s}._requests;
  deadline timestamptz := clock_timestamp() + timeout;
  pending_hint text := format('Withdraw it with SELECT ${s}.cancel(%s), or wait again with SELECT ${s}.wait_for_startup(%s).', handle, handle);
BEGIN
  r := ${s}._handle(handle, 'wait for');
  IF r.state IN ('requested', 'processing') AND r.requested_xact = pg_current_xact_id_if_assigned() THEN
    RAISE EXCEPTION 'cannot wait for a background worker launched in the same transaction'
      USING ERRCODE = 'active_sql_transaction',
            HINT = 'The launch takes effect when the transaction commits: call ${s}.wait_for_startup after COMMIT.';
  END IF;
  LOOP
    SELECT * INTO r FROM ${s}._requests WHERE id = $1;
    IF r.state = 'no_slot' THEN
      RETURN NULL;
    ELSIF r.state = 'cancelled' THEN
      RAISE EXCEPTION 'background worker launch % was cancelled', handle
        USING ERRCODE = 'query_canceled', DETAIL = coalesce(r.error, 'It was withdrawn before it started.');
    ELSIF r.state = 'refused' AND r.sqlstate IS NOT NULL THEN
      -- A refusal with its own SQLSTATE (permission denied, limits): raised as PostgreSQL would raise it.
      RAISE EXCEPTION USING MESSAGE = r.error, ERRCODE = r.sqlstate,
        DETAIL = coalesce(r.detail, format('Background worker launch %s was refused.', handle)),
        HINT = coalesce(r.hint, 'More details may be available in the server log.');
    ELSIF r.state = 'refused' OR (r.state = 'launched' AND r.status = 'stopped') THEN
      RAISE EXCEPTION 'could not start background process'
        USING ERRCODE = 'insufficient_resources',
              DETAIL = coalesce(r.error, 'The worker stopped before it was seen running.'),
              HINT = 'More details may be available in the server log.';
    ELSIF r.state = 'launched' AND r.status = 'started' THEN
      RETURN r.pid;
    ELSIF r.state = 'launched' AND r.status = 'postmaster died' THEN
      RAISE EXCEPTION 'cannot start background processes without postmaster'
        USING ERRCODE = 'insufficient_resources',
              DETAIL = 'The supervisor that launched the worker is gone, and the worker with it.',
              HINT = 'Launch it again once a supervisor is attached.';
    ELSIF r.state = 'requested' AND NOT ${s}._attached() THEN
      RAISE EXCEPTION 'background worker launch % is pending: no supervisor is attached', handle
        USING ERRCODE = 'insufficient_resources',
              DETAIL = 'The request stays queued and starts when a supervisor attaches.',
              HINT = pending_hint;
    ELSIF clock_timestamp() >= deadline THEN
      IF r.state IN ('requested', 'processing') THEN
        RAISE EXCEPTION 'background worker launch % did not start within %: it is still pending', handle, timeout
          USING ERRCODE = 'query_canceled',
                DETAIL = 'The request stays queued and starts when the supervisor reaches it.',
                HINT = pending_hint;
      ELSE
        RAISE EXCEPTION 'background worker launch % did not start within %: it is registered', handle, timeout
          USING ERRCODE = 'query_canceled',
                DETAIL = 'The worker is registered and starts when its start time is reached.',
                HINT = format('Stop it with SELECT ${s}.terminate(%s), or wait again.', handle);
      END IF;
    END IF;
    PERFORM pg_sleep(0.005);
  END LOOP;
END
$$`,
    // Withdraws a launch no supervisor has claimed yet: true when it was withdrawn (it will never start).
    `CREATE FUNCTION ${s}.cancel(handle bigint) RETURNS boolean
${definer}
AS $$
DECLARE
  r ${s}._requests := ${s}._handle(handle, 'cancel');
BEGIN
  UPDATE ${s}._requests SET state = 'cancelled', processed_at = pg_catalog.now(),
         error = format('Cancelled by role "%s".', ${s}._caller())
   WHERE id = r.id AND state = 'requested';
  RETURN FOUND;
END
$$`,
    `REVOKE ALL ON FUNCTION ${s}.cancel(bigint) FROM PUBLIC`,
    `GRANT EXECUTE ON FUNCTION ${s}.cancel(bigint) TO ${role}, pg_signal_backend`,
    // pg_reload_conf is a superuser's right unless granted: so is reload().
    `REVOKE EXECUTE ON FUNCTION ${s}.reload() FROM ${role}`,
    `GRANT EXECUTE ON FUNCTION ${s}.wait_for_startup(bigint, interval), ${s}.terminate(bigint), ${s}.set_latch(bigint)
  TO pg_signal_backend`
  ]
}

/**
 * The page of requests the attached supervisor claims, in one statement run on the session that holds the
 * lock (so a standby, or a supervisor whose lock session was lost, claims nothing), only while `$1` is the
 * supervisor recorded in `_config`, and only rows no one else holds (`SKIP LOCKED`: a concurrent `cancel`). Texts are
 * cut to their limits and large arguments left out (see the consumer). `$2` is the last id seen, `$3` the
 * largest argument read inline, `$4` the page size.
 */
export const claim = (s: string) =>
  claimWhere(
    s,
    `EXISTS (SELECT 1 FROM ${s}._config c WHERE c.supervisor_id = $1)
          AND (q.assigned_to IS NULL OR q.assigned_to = $1)`
  )

/** {@link claim} and {@link claimAssigned}: the page of requested rows (`q`) that also meet `which`. */
const claimWhere = (s: string, which: string) =>
  `WITH claimed AS (
  UPDATE ${s}._requests r SET state = 'processing', supervisor_id = $1, processed_at = pg_catalog.now()
  FROM (SELECT q.id FROM ${s}._requests q
        WHERE q.state = 'requested' AND q.id > $2
          AND ${which}
        ORDER BY q.id LIMIT $4 FOR UPDATE SKIP LOCKED) p
  WHERE r.id = p.id
  RETURNING r.id, r.kind, r.library, r.function, r.arg, r.name, r.type, r.requested_by, r.target, r.process, r.tried,
            coalesce(r.arg_bytes, pg_catalog.octet_length(r.arg::text)) AS arg_bytes
)
SELECT c.id, c.kind,
       pg_catalog.left(c.library, ${maxLibraryLen}) AS library, pg_catalog.octet_length(c.library) AS library_bytes,
       pg_catalog.left(c.function, ${bgwMaxLen}) AS function, pg_catalog.octet_length(c.function) AS function_bytes,
       CASE WHEN c.arg_bytes <= $3 THEN c.arg END AS arg, c.arg IS NULL AS no_arg, c.arg_bytes,
       pg_catalog.left(c.name, ${bgwMaxLen}) AS name, pg_catalog.octet_length(c.name) AS name_bytes,
       pg_catalog.left(c.type, ${bgwMaxLen}) AS type, pg_catalog.octet_length(c.type) AS type_bytes,
       pg_catalog.left(c.requested_by, 64) AS requested_by, c.target,
       pg_catalog.left(c.process, ${64}) AS process, c.tried
FROM claimed c ORDER BY c.id`

/** The first key of each supervisor's liveness lock; the second is `hashtext(<supervisor id>)`. */
export const livenessClassId = lockClassId + 1

/**
 * Taken by each supervisor on a session of its own for its whole life. `$1` is the supervisor id. Shared:
 * one supervisor attached to several schemas holds it once per schema, and never waits for it.
 */
export const livenessLock = () =>
  `SELECT pg_catalog.pg_advisory_lock_shared(${livenessClassId}, pg_catalog.hashtext($1))`

export const livenessUnlock = () =>
  `SELECT pg_catalog.pg_advisory_unlock_shared(${livenessClassId}, pg_catalog.hashtext($1))`

/**
 * A condition: the supervisor named by the text column `column` holds no liveness lock in this database
 * (it is gone, with its workers).
 */
export const deadSupervisor = (column: string) =>
  `NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.classid = ${livenessClassId}::oid AND l.objsubid = 2
      AND l.objid = (pg_catalog.hashtext(${column})::bigint & 4294967295)::oid
      AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
  )`

/**
 * Retention: deletes up to `$2` requests whose outcome is final and older than `$1` (an interval): signals
 * and reloads first, then launches no remaining signal refers to. A launch whose worker may still run
 * (`not yet started`, `started`) or that is still queued or claimed is never deleted.
 */
export const purge = (s: string): ReadonlyArray<string> => [
  `DELETE FROM ${s}._requests WHERE id IN (
     SELECT id FROM ${s}._requests
     WHERE kind <> 'launch' AND state NOT IN ('requested', 'processing')
       AND processed_at < pg_catalog.now() - $1::interval
     ORDER BY id LIMIT $2)`,
  `DELETE FROM ${s}._requests WHERE id IN (
     SELECT r.id FROM ${s}._requests r
     WHERE r.kind = 'launch' AND r.processed_at < pg_catalog.now() - $1::interval
       AND (r.state IN ('refused', 'no_slot', 'cancelled')
            OR (r.state = 'launched' AND r.status IN ('stopped', 'postmaster died')))
       AND NOT EXISTS (SELECT 1 FROM ${s}._requests t WHERE t.target = r.id)
     ORDER BY r.id LIMIT $2)`
]

/** Run on the lock's session with the lock held: the channel only this supervisor knows, and the limits. */
export const configure = (s: string) => `UPDATE ${s}._config SET channel = $1, max_argument_bytes = $2, wake_key = $3`

/** The schema, if any, where the dblink extension lives (the autonomous launch needs it). */
const dblinkSchema =
  `(SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'dblink')`

/**
 * The statements of migration 3, for PostgreSQL users' habits: the activity view gets the incarnation
 * number (its `pid` is now a database worker's backend pid) and the role (`usename`), and `start` launches
 * and waits in one call, committed on a session of its own (dblink), so that `SELECT start(...)` returns
 * the pid as `worker_spi_launch` does.
 */
export const fidelity = (s: string): ReadonlyArray<string> => {
  const role = launcherRole(s)
  return [
    `ALTER TABLE ${s}._activity ADD COLUMN incarnation integer, ADD COLUMN usename text`,
    // The libpq connection string of a session of the schema's owner on this database: set by the attached
    // supervisor when dblink can reach it, NULL otherwise. Private, like the rest of _config.
    `ALTER TABLE ${s}._config ADD COLUMN loopback text`,
    `DROP VIEW ${s}.activity`,
    `CREATE VIEW ${s}.activity AS
SELECT a.pid, a.incarnation, a.name, a.backend_type, a.usename, a.origin, a.registration, a.state, a.query,
       a.backend_start, a.state_change, a.wait_event_type, a.wait_event, a.restart_count, a.last_exit_kind,
       a.last_exit_message, a.last_exit_at, a.next_restart_at, a.given_up_reason,
       r.id AS handle, a.worker_handle, r.requested_by
FROM ${s}._activity a
JOIN ${s}._config c ON c.supervisor_id = a.supervisor_id
LEFT JOIN ${s}._requests r ON r.kind = 'launch' AND r.supervisor_id = a.supervisor_id AND r.handle = a.worker_handle
WHERE ${attached(s)}
ORDER BY a.slot`,
    `GRANT SELECT ON ${s}.activity TO ${role}, pg_read_all_stats`,
    // launch, with the caller given: only the owner may call it (from the loopback session of start).
    launchFunction(s, "_launch", "caller"),
    `REVOKE ALL ON FUNCTION ${s}._launch(text, text, text, jsonb, text, text) FROM PUBLIC`,
    // RegisterDynamicBackgroundWorker + WaitForBackgroundWorkerStartup in one call. The launch is committed
    // on a session of its own (dblink, as the owner), in the caller's name computed here, so that it takes
    // effect at once and the wait can see it, inside the caller's transaction. Without that session, the
    // launch belongs to the caller's transaction and the result is NULL with a notice saying so.
    startFunction(s, false),
    `REVOKE ALL ON FUNCTION ${s}.start(text, text, jsonb, text, text, interval) FROM PUBLIC`,
    `GRANT EXECUTE ON FUNCTION ${s}.start(text, text, jsonb, text, text, interval) TO ${role}`
  ]
}

/**
 * `start`: `launch` committed on a session of its own (dblink, as the owner), then `wait_for_startup`
 * (migration 3, whose text stays as released; migration 4 adds the optional `process`, and refuses an
 * argument over the limit before it travels over the loopback).
 */
const startFunction = (s: string, withProcess: boolean) =>
  `CREATE FUNCTION ${s}.start(library text, function text, arg jsonb DEFAULT NULL, name text DEFAULT NULL,
  type text DEFAULT NULL, timeout interval DEFAULT '10 seconds'${
    withProcess ? ", process text DEFAULT NULL" : ""
  }) RETURNS integer
${definer}
AS $$
DECLARE
  caller text := ${s}._caller();
  loopback text := (SELECT c.loopback FROM ${s}._config c);
  ext text := ${dblinkSchema};
  conn text := '${s}_start_' || pg_backend_pid();
  why text;
  handle bigint;
  pid integer;
  withdrawn boolean;
  msg text;
  code text;
  det text;
  hnt text;
BEGIN
  -- The loopback session is the owner's: a caller who may call dblink itself could use it while it is
  -- open (or left open by a cancelled call), so such a caller (unless a superuser) launches at commit.
  IF ext IS NOT NULL AND NOT ${isSuper("caller")} AND has_schema_privilege(caller, ext, 'USAGE')
     AND has_function_privilege(caller, format('%I.dblink(text, text)', ext)::regprocedure, 'EXECUTE') THEN
    loopback := NULL;
    why := format('role "%s" may call dblink itself, so the owner''s session is not opened for it', caller);
  END IF;
  IF loopback IS NULL OR ext IS NULL THEN
    handle := ${s}._launch(caller, $1, $2, $3, $4, $5${withProcess ? ", $7" : ""});
    RAISE NOTICE 'background worker launch % takes effect when this transaction commits', handle
      USING DETAIL = format('No session of its own commits it at once (%s), so no pid is known yet.',
                            coalesce(why, 'dblink is not installed, or the supervisor has no loopback connection')),
            HINT = format('After COMMIT, SELECT ${s}.wait_for_startup(%s) returns its pid.', handle);
    RETURN NULL;
  END IF;
${
    withProcess
      ? `  -- An argument over the limit is refused here, before it travels over the loopback: _launch raises the
  -- limit's error before it stores anything.
  IF octet_length($3::text) > (SELECT c.max_argument_bytes FROM ${s}._config c) THEN
    PERFORM ${s}._launch(caller, $1, $2, $3, $4, $5, $7);
  END IF;
`
      : ""
  }  -- A connection left behind by a call of this session that was cancelled mid-way.
  EXECUTE format('SELECT %L = ANY (coalesce(%I.dblink_get_connections(), ''{}''))', conn, ext) INTO withdrawn;
  IF withdrawn THEN
    EXECUTE format('SELECT %I.dblink_disconnect(%L)', ext, conn);
  END IF;
  EXECUTE format('SELECT %I.dblink_connect(%L, %L)', ext, conn, loopback);
  BEGIN
    EXECUTE format('SELECT h FROM %I.dblink(%L, %L) AS t(h bigint)', ext, conn,
      format('SELECT %I._launch(%L, %L, %L, %L::jsonb, %L, %L${
    withProcess ? ", %L" : ""
  })', '${s}', caller, $1, $2, $3::text, $4, $5${withProcess ? ", $7" : ""}))
      INTO handle;
    LOOP
      BEGIN
        EXECUTE format('SELECT p FROM %I.dblink(%L, %L) AS t(p integer)', ext, conn,
          format('SELECT %I.wait_for_startup(%s, %L)', '${s}', handle, timeout)) INTO pid;
        EXIT;
      EXCEPTION WHEN query_canceled OR insufficient_resources THEN
        GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, code = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL,
                                hnt = PG_EXCEPTION_HINT;
        IF msg NOT LIKE '%pending%' THEN
          RAISE EXCEPTION USING MESSAGE = msg, ERRCODE = code, DETAIL = det, HINT = hnt;
        END IF;
      END;
      -- Still queued (no supervisor attached, or not reached in time): withdrawn, so that the failure is
      -- final, as worker_spi_launch's is. If a supervisor claimed it meanwhile, its outcome is awaited.
      EXECUTE format('SELECT w FROM %I.dblink(%L, %L) AS t(w boolean)', ext, conn,
        format('SELECT %I.cancel(%s)', '${s}', handle)) INTO withdrawn;
      IF withdrawn THEN
        RAISE EXCEPTION 'could not start background process'
          USING ERRCODE = 'insufficient_resources', DETAIL = msg || '; the launch was withdrawn.',
                HINT = 'More details may be available in the server log.';
      END IF;
    END LOOP;
  EXCEPTION WHEN OTHERS OR query_canceled THEN
    -- query_canceled too (OTHERS leaves it out): a cancelled call must not leave the session behind.
    EXECUTE format('SELECT %I.dblink_disconnect(%L)', ext, conn);
    RAISE;
  END;
  EXECUTE format('SELECT %I.dblink_disconnect(%L)', ext, conn);
  RETURN pid;
END
$$`

/** Run on the lock's session: how `start` reaches this database as the owner (NULL: it cannot). */
export const configureLoopback = (s: string) => `UPDATE ${s}._config SET loopback = $1`

// --- migration 4: many processes ---

/**
 * Replaces `old` (a signature) by the function `create` makes, keeping who may execute it: the grants of
 * EXECUTE on the old function (the defaults and any a DBA added) are given on the new one, `newSignature`.
 * A new parameter with a default cannot live beside the old function (calls would be ambiguous).
 */
const replaceFunction = (old: string, create: string, newSignature: string) =>
  `DO $do$
DECLARE
  acl aclitem[] := (SELECT p.proacl FROM pg_catalog.pg_proc p WHERE p.oid = '${old}'::regprocedure);
  grantee record;
BEGIN
  EXECUTE 'DROP FUNCTION ${old}';
  EXECUTE $fn$${create}$fn$;
  IF acl IS NOT NULL THEN
    EXECUTE 'REVOKE ALL ON FUNCTION ${newSignature} FROM PUBLIC';
    FOR grantee IN
      SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.quote_ident(r.rolname) END AS name
      FROM pg_catalog.aclexplode(acl) a LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
      WHERE a.privilege_type = 'EXECUTE' AND (a.grantee = 0 OR r.rolname IS NOT NULL)
    LOOP
      EXECUTE format('GRANT EXECUTE ON FUNCTION ${newSignature} TO %s', grantee.name);
    END LOOP;
  END IF;
END
$do$`

/** The longest process id a call may name (ids are UUIDs: 36 characters). */
export const maxProcessBytes = 64

/**
 * The statements of migration 4: every supervisor process attached to the schema registers in
 * `_processes` (view `processes`); the activity view shows the workers of every live process, with the
 * process; a launch may name its process (`launch`, `_launch`, `start` gain `process text DEFAULT NULL`,
 * keeping their grants), and so may `reload(process)`; requests carry where they run (`assigned_to`).
 */
export const processes = (s: string): ReadonlyArray<string> => {
  const role = launcherRole(s)
  return [
    `CREATE TABLE ${s}._processes (
  id text PRIMARY KEY,
  host text NOT NULL,
  os_pid integer NOT NULL,
  started_at timestamptz NOT NULL,
  attached_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  heartbeat_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
  dead_at timestamptz,
  channel text NOT NULL,
  wake_key text NOT NULL,
  max_workers integer,
  free_slots integer
)`,
    `REVOKE ALL ON ${s}._processes FROM PUBLIC`,
    // process: the one the caller named (NULL: any); assigned_to: the one that is to process the row now
    // (NULL: the attached supervisor); tried: processes that had no free slot for an unnamed launch.
    `ALTER TABLE ${s}._requests ADD COLUMN process text, ADD COLUMN assigned_to text,
  ADD COLUMN tried text[] NOT NULL DEFAULT '{}'`,
    `CREATE INDEX ON ${s}._requests (assigned_to, id) WHERE state = 'requested'`,
    // Wakes the process the request is assigned to, else the attached supervisor.
    `CREATE OR REPLACE FUNCTION ${s}._notify(request bigint) RETURNS void
LANGUAGE sql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$ SELECT pg_notify(coalesce(
  (SELECT p.channel FROM ${s}._requests r JOIN ${s}._processes p ON p.id = r.assigned_to WHERE r.id = request),
  (SELECT channel FROM ${s}._config)), request::text) $$`,
    // The live process a call names (NULL for none); an error for one that is not running.
    `CREATE FUNCTION ${s}._live_process(process text) RETURNS ${s}._processes
${definer}
AS $$
DECLARE
  p ${s}._processes;
BEGIN
  IF process IS NULL THEN
    RETURN NULL;
  END IF;
  IF octet_length(process) > ${maxProcessBytes} THEN
    RAISE EXCEPTION 'background worker process name is too long (% bytes)', octet_length(process)
      USING ERRCODE = 'string_data_right_truncation', DETAIL = 'A process id holds at most ${maxProcessBytes} bytes.';
  END IF;
  SELECT * INTO p FROM ${s}._processes WHERE id = process;
  IF NOT FOUND OR p.dead_at IS NOT NULL THEN
    RAISE EXCEPTION 'supervisor process "%" is not running', process
      USING ERRCODE = 'invalid_parameter_value',
            HINT = 'SELECT process FROM ${s}.processes lists the processes attached to the control plane.';
  END IF;
  RETURN p;
END
$$`,
    `REVOKE ALL ON FUNCTION ${s}._live_process(text) FROM PUBLIC`,
    replaceFunction(
      `${s}.launch(text, text, jsonb, text, text)`,
      launchFunction(s, "launch", `${s}._caller()`, true),
      `${s}.launch(text, text, jsonb, text, text, text)`
    ),
    replaceFunction(
      `${s}._launch(text, text, text, jsonb, text, text)`,
      launchFunction(s, "_launch", "caller", true),
      `${s}._launch(text, text, text, jsonb, text, text, text)`
    ),
    replaceFunction(
      `${s}.start(text, text, jsonb, text, text, interval)`,
      startFunction(s, true),
      `${s}.start(text, text, jsonb, text, text, interval, text)`
    ),
    // Signals go to the process of the worker: the one that launched it, else the one it is assigned to.
    `CREATE OR REPLACE FUNCTION ${s}._signal(handle bigint, kind text, action text) RETURNS void
${definer}
AS $$
DECLARE
  r ${s}._requests := ${s}._handle(handle, action);
  request bigint;
BEGIN
  INSERT INTO ${s}._requests (kind, target, requested_by, assigned_to)
    VALUES (kind, r.id, ${s}._caller(),
            CASE WHEN r.state IN ('launched', 'processing') THEN r.supervisor_id ELSE r.assigned_to END)
    RETURNING id INTO request;
  PERFORM ${s}._notify(request);
END
$$`,
    `REVOKE ALL ON FUNCTION ${s}._signal(bigint, text, text) FROM PUBLIC`,
    `CREATE OR REPLACE FUNCTION ${s}.terminate(handle bigint) RETURNS void
${definer}
AS $$ BEGIN PERFORM ${s}._signal(handle, 'terminate', 'terminate'); END $$`,
    `CREATE OR REPLACE FUNCTION ${s}.set_latch(handle bigint) RETURNS void
${definer}
AS $$ BEGIN PERFORM ${s}._signal(handle, 'set_latch', 'set the latch of'); END $$`,
    // reload(): every live process, as pg_reload_conf reaches every backend (the attached supervisor when
    // none is registered). reload(process): the named one. Both need the right to execute reload().
    `CREATE OR REPLACE FUNCTION ${s}.reload() RETURNS void
${definer}
AS $$
DECLARE
  request bigint;
  p record;
  any_process boolean := false;
BEGIN
  FOR p IN SELECT id FROM ${s}._processes WHERE dead_at IS NULL ORDER BY id LOOP
    INSERT INTO ${s}._requests (kind, requested_by, process, assigned_to)
      VALUES ('reload', ${s}._caller(), p.id, p.id) RETURNING id INTO request;
    PERFORM ${s}._notify(request);
    any_process := true;
  END LOOP;
  IF NOT any_process THEN
    INSERT INTO ${s}._requests (kind, requested_by) VALUES ('reload', ${s}._caller()) RETURNING id INTO request;
    PERFORM ${s}._notify(request);
  END IF;
END
$$`,
    `CREATE FUNCTION ${s}.reload(process text) RETURNS void
${definer}
AS $$
DECLARE
  target ${s}._processes;
  request bigint;
BEGIN
  IF NOT has_function_privilege(${s}._caller(), '${s}.reload()', 'EXECUTE') THEN
    RAISE EXCEPTION 'permission denied for function reload' USING ERRCODE = 'insufficient_privilege';
  END IF;
  target := ${s}._live_process(process);
  IF target.id IS NULL THEN
    PERFORM ${s}.reload();
    RETURN;
  END IF;
  INSERT INTO ${s}._requests (kind, requested_by, process, assigned_to)
    VALUES ('reload', ${s}._caller(), target.id, target.id) RETURNING id INTO request;
  PERFORM ${s}._notify(request);
END
$$`,
    // Its own check mirrors reload()'s grants, so EXECUTE is open: who may call reload() may call this.
    `REVOKE ALL ON FUNCTION ${s}.reload(text) FROM PUBLIC`,
    `GRANT EXECUTE ON FUNCTION ${s}.reload(text) TO PUBLIC`,
    // The process a launch ran (or is to run) on, with wait_for_startup's rights.
    `CREATE FUNCTION ${s}.process_of(handle bigint) RETURNS text
${definer}
AS $$
DECLARE
  r ${s}._requests := ${s}._handle(handle, 'look up');
BEGIN
  RETURN CASE WHEN r.state IN ('launched', 'processing') THEN r.supervisor_id ELSE coalesce(r.assigned_to, r.process) END;
END
$$`,
    `REVOKE ALL ON FUNCTION ${s}.process_of(bigint) FROM PUBLIC`,
    `GRANT EXECUTE ON FUNCTION ${s}.process_of(bigint) TO ${role}, pg_signal_backend`,
    `CREATE VIEW ${s}.processes AS
SELECT p.id AS process, p.host, p.os_pid, p.started_at, p.attached_at, p.heartbeat_at, p.dead_at,
       p.dead_at IS NULL AS live, p.id = c.supervisor_id AND ${attached(s)} AS coordinator,
       p.max_workers, p.free_slots
FROM ${s}._processes p CROSS JOIN ${s}._config c
ORDER BY p.started_at, p.id`,
    `GRANT SELECT ON ${s}.processes TO ${role}, pg_read_all_stats`,
    `DROP VIEW ${s}.activity`,
    `CREATE VIEW ${s}.activity AS
SELECT a.pid, a.incarnation, a.name, a.backend_type, a.usename, a.origin, a.registration, a.state, a.query,
       a.backend_start, a.state_change, a.wait_event_type, a.wait_event, a.restart_count, a.last_exit_kind,
       a.last_exit_message, a.last_exit_at, a.next_restart_at, a.given_up_reason,
       r.id AS handle, a.worker_handle, r.requested_by, a.supervisor_id AS process
FROM ${s}._activity a
JOIN ${s}._processes p ON p.id = a.supervisor_id AND p.dead_at IS NULL
LEFT JOIN ${s}._requests r ON r.kind = 'launch' AND r.supervisor_id = a.supervisor_id AND r.handle = a.worker_handle
WHERE ${attached(s)}
ORDER BY p.started_at, a.supervisor_id, a.slot`,
    `GRANT SELECT ON ${s}.activity TO ${role}, pg_read_all_stats`
  ]
}

/**
 * Registers (or refreshes) this process. `$1` id, `$2` host, `$3` OS pid, `$4` start (ms), `$5` channel, `$6` key,
 * `$7` max workers.
 */
export const register = (s: string) =>
  `INSERT INTO ${s}._processes (id, host, os_pid, started_at, channel, wake_key, max_workers)
   VALUES ($1, $2, $3, pg_catalog.to_timestamp($4 / 1000.0), $5, $6, $7)
   ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, os_pid = EXCLUDED.os_pid, channel = EXCLUDED.channel,
     wake_key = EXCLUDED.wake_key, max_workers = EXCLUDED.max_workers, heartbeat_at = pg_catalog.now(),
     dead_at = NULL, attached_at = pg_catalog.now()`

/** The heartbeat: `$1` id, `$2` free slots. No row, or `was_dead`: the process must register and publish again. */
export const heartbeat = (s: string) =>
  `UPDATE ${s}._processes p SET heartbeat_at = pg_catalog.now(), dead_at = NULL, free_slots = $2
   FROM (SELECT id, dead_at FROM ${s}._processes WHERE id = $1 FOR UPDATE) o
   WHERE p.id = o.id
   RETURNING o.dead_at IS NOT NULL AS was_dead`

/**
 * The condition of a process that is gone: not yet marked dead, its heartbeat older than `$1` (an interval),
 * and its liveness lock free (a process that lives holds its lock, so a slow heartbeat never marks it).
 */
const lapsedProcess = `dead_at IS NULL AND heartbeat_at < pg_catalog.now() - $1::interval AND ${deadSupervisor("id")}`

/** The processes that are gone ({@link markDead} marks each, with its burial, in a transaction). `$1` interval. */
export const lapsed = (s: string) => `SELECT id FROM ${s}._processes WHERE ${lapsedProcess}`

/**
 * Marks dead the process `$2` if it is still gone (`$1` interval; see {@link lapsed}): its id, or no row when
 * it came back or another process marked it first (the row lock makes that one wait, then see `dead_at`).
 */
export const markDead = (s: string) =>
  `UPDATE ${s}._processes SET dead_at = pg_catalog.now() WHERE id = $2 AND ${lapsedProcess} RETURNING id`

/**
 * Where an unnamed launch with no slot here may go: a live process that has not tried it, those reporting
 * the most free slots first. The report may be stale (a worker ended since), so it orders, never excludes:
 * the process itself decides, and hands it on again when it has no slot.
 */
export const otherProcess = (s: string) =>
  `SELECT p.id, p.channel FROM ${s}._processes p
   WHERE p.dead_at IS NULL AND p.id <> $1 AND NOT (p.id = ANY ($2::text[]))
   ORDER BY p.free_slots DESC NULLS FIRST, p.id LIMIT 1`

/**
 * The requests a process that is not attached claims: those assigned to it, while it is registered and
 * live. `$1` id, `$2` last id seen, `$3` inline argument limit, `$4` page size. Same columns as {@link claim}.
 */
export const claimAssigned = (s: string) =>
  claimWhere(
    s,
    `q.assigned_to = $1
          AND EXISTS (SELECT 1 FROM ${s}._processes m WHERE m.id = $1 AND m.dead_at IS NULL)`
  )
