"""``s3-log-handler snowflake-ddl``: real Snowflake SQL (sqlglot parses it), no inline keys."""

from __future__ import annotations

import re
from typing import ClassVar

import pytest
import sqlglot
from sqlglot import exp

from s3_log_handler._cli import main
from s3_log_handler._snowflake import PLACEHOLDER_ROLE_ARN, snowflake_ddl

ROLE = "arn:aws:iam::123456789012:role/analytics/snowflake-reader"


def statements(sql: str) -> list[exp.Expression]:
    """Every statement, parsed strictly by sqlglot's Snowflake dialect."""
    parsed = sqlglot.parse(sql, read="snowflake", error_level=sqlglot.ErrorLevel.RAISE)
    return [s for s in parsed if s is not None]


def literal(sql: str, option: str) -> str:
    """The string value of the first ``OPTION = '...'`` in ``sql``, its quotes undoubled."""
    match = re.search(rf"{option} = '((?:[^']|'')*)'", sql)
    assert match, option
    return match.group(1).replace("''", "'")


class TestStatements:
    @pytest.mark.parametrize("file_format", ["json", "parquet"])
    def test_every_statement_parses_as_snowflake_sql(self, file_format: str) -> None:
        """Integration, file format, stage, table and COPY parse as what they are; the pipe's
        COPY too (sqlglot keeps CREATE PIPE itself as a generic command)."""
        sql = snowflake_ddl("my-analytics", role=ROLE, file_format=file_format)
        parsed = statements(sql)
        kinds = [s.args["kind"] if isinstance(s, exp.Create) else type(s).__name__
                 for s in parsed]
        assert kinds[:5] == ["STORAGE INTEGRATION", "FILE FORMAT", "STAGE", "TABLE", "Copy"]
        assert len(parsed) == 6 and isinstance(parsed[5], exp.Command)
        pipe = sql[sql.index("CREATE PIPE"):]
        assert re.match(r"CREATE PIPE IF NOT EXISTS session_analytics_pipe\s+AUTO_INGEST = TRUE"
                        r"\s+AS\s", pipe)
        pipe_copy = statements(pipe.split("\n  AS\n", 1)[1])
        assert len(pipe_copy) == 1 and isinstance(pipe_copy[0], exp.Copy)
        assert pipe_copy[0] == parsed[4]

    def test_the_table_holds_the_payload_as_variant_and_the_partition_date(self) -> None:
        table = statements(snowflake_ddl("my-analytics", role=ROLE))[3]
        columns = {c.name: c.args["kind"].sql("snowflake") for c in table.find_all(exp.ColumnDef)}
        assert columns["payload"] == "VARIANT"
        assert {"year", "month", "day", "file_name"} <= columns.keys()

    def test_no_inline_keys_only_the_role(self) -> None:
        """The stage goes through the integration; no AWS_KEY_ID, AWS_SECRET_KEY, CREDENTIALS."""
        for file_format in ("json", "parquet"):
            sql = snowflake_ddl("my-analytics", role=ROLE, file_format=file_format)
            for word in ("AWS_KEY_ID", "AWS_SECRET_KEY", "AWS_TOKEN", "CREDENTIALS"):
                assert word not in sql.upper()
            assert literal(sql, "STORAGE_AWS_ROLE_ARN") == ROLE
            assert "STORAGE_INTEGRATION = s3_analytics_integration" in sql

    def test_without_a_role_the_placeholder_is_printed_and_said_so(self) -> None:
        sql = snowflake_ddl("my-analytics")
        assert literal(sql, "STORAGE_AWS_ROLE_ARN") == PLACEHOLDER_ROLE_ARN
        assert "Replace ACCOUNT_ID" in sql

    def test_file_formats(self) -> None:
        assert "TYPE = JSON\n  COMPRESSION = AUTO;" in snowflake_ddl("b-1", role=ROLE)
        assert "TYPE = PARQUET;" in snowflake_ddl("b-1", role=ROLE, file_format="parquet")

    def test_a_qualified_table_names_its_stage_format_and_pipe_in_the_same_schema(self) -> None:
        sql = snowflake_ddl("b-1", role=ROLE, table="analytics.public.sessions")
        assert "FROM @analytics.public.sessions_stage" in sql
        assert "CREATE PIPE IF NOT EXISTS analytics.public.sessions_pipe" in sql
        assert len(statements(sql)) == 6


class TestPattern:
    KEYS: ClassVar[dict[str, bool]] = {
        "year=2026/month=11/day=25/rm_abc123.json.gz": True,
        "year=2026/month=11/day=25/host-12-3-0f1e.ndjson.gz": True,
        "year=2026/month=11/day=25/rm_abc123.json.zst": True,
        "year=2026/month=11/day=25/hour=07/rm_abc123.json": True,
        "env=prod/year=2026/month=11/day=25/rm_abc123.json.gz": True,
        "year=2026/month=11/day=25/_tmp.json.gz": False,
        "year=2026/month=11/day=25/.rm.json.gz": False,
        "rm_abc123.json.gz": False,
        "year=2026/month=11/day=25/rm_abc123.parquet": False,
    }

    def test_pattern_takes_the_handlers_objects_and_skips_hidden_and_stray_ones(self) -> None:
        """PATTERN matches the whole path below the stage URL, as Snowflake applies it."""
        pattern = literal(snowflake_ddl("b-1", role=ROLE), "PATTERN")
        assert {k: re.fullmatch(pattern, k) is not None for k in self.KEYS} == self.KEYS
        parquet = literal(snowflake_ddl("b-1", role=ROLE, file_format="parquet"), "PATTERN")
        assert re.fullmatch(parquet, "year=2026/month=11/day=25/part-1.parquet")

    def test_date_columns_come_from_the_partition_folders(self) -> None:
        """The REGEXP_SUBSTR patterns take year/month/day, not e.g. fiscal_year=."""
        sql = snowflake_ddl("b-1", role=ROLE)
        found = re.findall(r"REGEXP_SUBSTR\(METADATA\$FILENAME, '([^']*)', 1, 1, 'e', 2\)", sql)
        path = "fiscal_year=1999/year=2026/month=02/day=05/rm.json.gz"
        assert [int(re.search(p, path).group(2)) for p in found[:3]] == [2026, 2, 5]


class TestHostileNames:
    @pytest.mark.parametrize("argv", [
        ["--bucket", "b'; DROP TABLE x; --"],
        ["--bucket", "ok-bucket", "--prefix", "p' OR '1'='1"],
        ["--bucket", "ok-bucket", "--prefix", "sessions/*"],
        ["--bucket", "ok-bucket", "--integration", "i; DROP INTEGRATION j"],
        ["--bucket", "ok-bucket", "--integration", 'i"'],
        ["--bucket", "ok-bucket", "--table", "t; DROP TABLE u"],
        ["--bucket", "ok-bucket", "--table", "a.b.c.d"],
        ["--bucket", "ok-bucket", "--table", "Robert'"],
        ["--bucket", "ok-bucket", "--role-arn", "arn:aws:iam::123456789012:role/x'--"],
        ["--bucket", "ok-bucket", "--role-arn", "arn:aws:iam::123456789012:role/*"],
        ["--bucket", "ok-bucket", "--role-arn", "arn:aws:iam::123456789012:user/alice"],
    ])
    def test_refused_with_exit_2_and_nothing_on_stdout(
            self, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
        assert main(["snowflake-ddl", *argv]) == 2
        out = capsys.readouterr()
        assert out.out == "" and "must be" in out.err

    def test_an_unknown_format_is_a_usage_error(self) -> None:
        with pytest.raises(SystemExit) as stop:
            main(["snowflake-ddl", "--bucket", "ok-bucket", "--format", "csv"])
        assert stop.value.code == 2

    def test_the_command_prints_what_the_function_returns(
            self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["snowflake-ddl", "--bucket", "ok-bucket", "--role-arn", ROLE,
                     "--format", "parquet", "--table", "s.t", "--integration", "i_1"]) == 0
        assert capsys.readouterr().out == snowflake_ddl(
            "ok-bucket", role=ROLE, file_format="parquet", table="s.t", integration="i_1")
