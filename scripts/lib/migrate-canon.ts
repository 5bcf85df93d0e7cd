/**
 * The migration's content check: the same canonical text of every row, computed by SQLite on the snapshot and
 * by PostgreSQL on the loaded tables, streamed through sha256sum on the server (never held in memory), in
 * primary-key order. Two equal digests and counts mean every value arrived as it was.
 *
 * One line per row: the columns in the table's order, separated by a tab. Each value:
 *   NULL     \N
 *   integer  its decimal digits (SQLite CAST(x AS TEXT), PostgreSQL x::text)
 *   real     printf %.15g on both sides: SQLite printf('%.15g'), PostgreSQL float8 output with
 *            extra_float_digits = 0 (which is %.15g). 15 significant digits is what both print exactly
 *            (SQLite's own printf is not exact at 17); a difference in the last two of 17 digits is not seen.
 *            ±Infinity as PostgreSQL spells it.
 *   text     the characters, with \ → \\, tab → \t, newline → \n, carriage return → \r (so a row is a line)
 *   blob     lowercase hex (PostgreSQL bytea: encode(x, 'hex'))
 * SQLite values are canonicalised by their stored type (typeof), PostgreSQL's by the column's type: where
 * pgloader changed a value's type (text in an INTEGER column), the texts differ and the check fails.
 */

/** A column as `PRAGMA table_info` reports it on the SQLite side. */
export interface SqliteColumn {
  readonly name: string;
  /** The declared type, e.g. "INTEGER", "TEXT", "" */
  readonly type: string;
  readonly notNull: boolean;
  /** The default as written in the schema (an expression in parentheses, a literal), or "" */
  readonly defaultValue: string;
  /** Position in the primary key (1-based), 0 when not part of it. */
  readonly pk: number;
}

export interface SqliteTable {
  readonly name: string;
  readonly columns: readonly SqliteColumn[];
}

/** A PostgreSQL column type family, from information_schema.columns.data_type. */
export type PgKind = "integer" | "real" | "text" | "bytea" | "other";

export function pgKind(dataType: string): PgKind {
  const t = dataType.toLowerCase();
  if (/^(smallint|integer|bigint|numeric)$/.test(t)) return "integer";
  if (/^(real|double precision)$/.test(t)) return "real";
  if (t === "bytea") return "bytea";
  if (/^(text|character varying|character)$/.test(t)) return "text";
  return "other";
}

/** Only plain names reach the SQL (APP_TABLES_QUERY keeps to [A-Za-z0-9_]; columns are checked here). */
export function plainName(name: string, what: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new Error(`${what} ${JSON.stringify(name)} is not a plain name ([A-Za-z_][A-Za-z0-9_]*): the migration compares only such tables and columns; rename it in an app migration first`);
  }
  return name;
}

/** pgloader's "downcase identifiers": the name a SQLite table or column gets in PostgreSQL. */
export const pgName = (name: string): string => name.toLowerCase();

const sqliteText = (x: string) => `replace(replace(replace(replace(${x}, '\\', '\\\\'), char(9), '\\t'), char(10), '\\n'), char(13), '\\r')`;
const pgText = (x: string) => `replace(replace(replace(replace(${x}, E'\\\\', E'\\\\\\\\'), E'\\t', E'\\\\t'), E'\\n', E'\\\\n'), E'\\r', E'\\\\r')`;

/** The canonical text of one SQLite value (by its stored type). */
export function sqliteValue(column: string): string {
  const c = `"${plainName(column, "column")}"`;
  return `CASE typeof(${c}) WHEN 'null' THEN '\\N' WHEN 'integer' THEN CAST(${c} AS TEXT) WHEN 'real' THEN CASE WHEN ${c} = 9e999 THEN 'Infinity' WHEN ${c} = -9e999 THEN '-Infinity' ELSE printf('%.15g', ${c}) END WHEN 'text' THEN ${sqliteText(c)} ELSE lower(hex(${c})) END`;
}

/** The canonical text of one PostgreSQL value (by its column's type). Needs `SET extra_float_digits = 0`. */
export function pgValue(column: string, kind: PgKind): string {
  const c = `"${pgName(plainName(column, "column"))}"`;
  const text = kind === "integer" || kind === "real" ? `${c}::text` : kind === "bytea" ? `encode(${c}, 'hex')` : pgText(`${c}::text`);
  return `coalesce(${text}, E'\\\\N')`;
}

/** The ORDER BY of a table: its primary key (rowid for a table without one: pgloader keeps no rowid, so the whole row then). */
function orderColumns(table: SqliteTable): { readonly columns: readonly string[]; readonly byRow: boolean } {
  const pk = table.columns.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk).map((c) => c.name);
  return pk.length > 0 ? { columns: pk, byRow: false } : { columns: [], byRow: true };
}

/** SELECT of every row's canonical line on the SQLite side, in primary-key order. */
export function sqliteRowsQuery(table: SqliteTable): string {
  const name = plainName(table.name, "table");
  const line = table.columns.map((c) => sqliteValue(c.name)).join(` || char(9) || `);
  const order = orderColumns(table);
  // BINARY collation is memcmp: the same order as PostgreSQL's COLLATE "C" on UTF-8 text.
  const by = order.byRow ? "1" : order.columns.map((c) => `"${c}"`).join(", ");
  return `SELECT ${line} FROM "${name}" ORDER BY ${by};`;
}

/** SELECT of every row's canonical line on the PostgreSQL side, in the same order. */
export function pgRowsQuery(table: SqliteTable, kinds: Readonly<Record<string, PgKind>>): string {
  const name = pgName(plainName(table.name, "table"));
  const kindOf = (c: string) => kinds[pgName(c)] ?? "other";
  const line = table.columns.map((c) => pgValue(c.name, kindOf(c.name))).join(` || E'\\t' || `);
  const order = orderColumns(table);
  const by = order.byRow
    ? `1 COLLATE "C"`
    : order.columns.map((c) => (kindOf(c) === "text" || kindOf(c) === "other" ? `"${pgName(c)}" COLLATE "C"` : `"${pgName(c)}"`)).join(", ");
  return `SELECT ${line} FROM "${name}" ORDER BY ${by};`;
}

/**
 * The `table` lines the snapshot's inspection prints (tab-separated): `column<TAB>table<TAB>name<TAB>type<TAB>
 * notnull<TAB>default<TAB>pk`. Returns the tables in order of first appearance.
 */
export function parseSqliteColumns(stdout: string): SqliteTable[] {
  const tables = new Map<string, SqliteColumn[]>();
  for (const line of stdout.split("\n")) {
    const [tag, table, name, type, notNull, defaultValue, pk] = line.split("\t");
    if (tag !== "column" || !table || !name) continue;
    const columns = tables.get(table) ?? [];
    columns.push({ name, type: type ?? "", notNull: notNull === "1", defaultValue: defaultValue ?? "", pk: Number(pk ?? 0) });
    tables.set(table, columns);
  }
  return [...tables].map(([name, columns]) => ({ name, columns }));
}

/** A default pgloader carries over as it is: a number, a quoted string, NULL (pragma table_info prints expressions without their parentheses). */
const SQL_LITERAL = /^(-?\d+(\.\d+)?|'([^']|'')*'|NULL|TRUE|FALSE)$/i;

/** The integer primary key of a table (SQLite's rowid alias: one INTEGER column), which becomes an identity. */
export function integerKey(table: SqliteTable): string | undefined {
  const pk = table.columns.filter((c) => c.pk > 0);
  return pk.length === 1 && /^INTEGER$/i.test(pk[0].type) ? pk[0].name : undefined;
}

/**
 * The SQL that finishes pgloader's tables to match the SQLite schema (pgloader 3.6 keeps neither NOT NULL nor
 * expression defaults): NOT NULL where SQLite has it; a default that was an SQLite expression (e.g.
 * `(strftime(...))`, which pgloader turns into a string literal) dropped — the app's own PostgreSQL
 * migration, or the app, provides it; an INTEGER PRIMARY KEY becomes `generated by default as identity`,
 * moved past max(id). Returns the statements and a note per dropped default.
 */
export function schemaFixSql(tables: readonly SqliteTable[]): { readonly sql: string; readonly notes: readonly string[] } {
  const out: string[] = [];
  const notes: string[] = [];
  for (const table of tables) {
    const t = `"${pgName(plainName(table.name, "table"))}"`;
    for (const c of table.columns) {
      const col = `"${pgName(plainName(c.name, "column"))}"`;
      if (c.notNull || c.pk > 0) out.push(`ALTER TABLE ${t} ALTER COLUMN ${col} SET NOT NULL;`);
      if (c.defaultValue !== "" && !SQL_LITERAL.test(c.defaultValue)) {
        out.push(`ALTER TABLE ${t} ALTER COLUMN ${col} DROP DEFAULT;`);
        notes.push(`${table.name}.${c.name}: its SQLite default (${c.defaultValue}) is an SQLite expression; dropped on PostgreSQL (the app or its PostgreSQL migration sets it)`);
      }
    }
    const key = integerKey(table);
    if (key) {
      const col = `"${pgName(key)}"`;
      out.push(`ALTER TABLE ${t} ALTER COLUMN ${col} DROP DEFAULT;`);
      out.push(`ALTER TABLE ${t} ALTER COLUMN ${col} ADD GENERATED BY DEFAULT AS IDENTITY;`);
      out.push(`SELECT setval(pg_get_serial_sequence('${pgName(table.name)}', '${pgName(key)}'), coalesce((SELECT max(${col}) FROM ${t}), 0) + 1, false);`);
    }
  }
  return { sql: out.join("\n"), notes };
}

/** One table's comparison: row counts and digests on both sides. */
export interface TableCheck {
  readonly table: string;
  readonly sqliteRows: number;
  readonly pgRows: number;
  readonly sqliteSha: string;
  readonly pgSha: string;
}

export const checkPasses = (c: TableCheck): boolean => c.sqliteRows === c.pgRows && c.sqliteSha === c.pgSha && c.sqliteSha !== "";

/** `check<TAB>table<TAB>sqlite|pg<TAB>rows<TAB>sha256` lines → one TableCheck per table. */
export function parseChecks(stdout: string): TableCheck[] {
  const byTable = new Map<string, { sqliteRows: number; pgRows: number; sqliteSha: string; pgSha: string }>();
  for (const line of stdout.split("\n")) {
    const [tag, table, side, rows, sha] = line.split("\t");
    if (tag !== "check" || !table) continue;
    const entry = byTable.get(table) ?? { sqliteRows: -1, pgRows: -1, sqliteSha: "", pgSha: "" };
    if (side === "sqlite") Object.assign(entry, { sqliteRows: Number(rows), sqliteSha: sha ?? "" });
    if (side === "pg") Object.assign(entry, { pgRows: Number(rows), pgSha: sha ?? "" });
    byTable.set(table, entry);
  }
  return [...byTable].map(([table, e]) => ({ table, ...e }));
}

export function formatChecks(checks: readonly TableCheck[]): string {
  const rows = checks.map((c) => [c.table, String(c.sqliteRows), String(c.pgRows), c.sqliteSha.slice(0, 12), c.pgSha.slice(0, 12), checkPasses(c) ? "same" : "DIFFERENT"]);
  const all = [["table", "SQLite rows", "PostgreSQL rows", "SQLite sha256", "PostgreSQL sha256", ""], ...rows];
  const widths = all[0].map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all.map((r) => "  " + r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd()).join("\n");
}
