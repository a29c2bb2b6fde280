"""``s3-log-handler inspect`` against a moto bucket: counts, estimates and every red flag named."""

from __future__ import annotations

import gzip
import json
import logging
from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
import zstandard

from s3_log_handler import S3Handler
from s3_log_handler._cli import main
from s3_log_handler._iam import READER_ACTIONS, reader_policy
from s3_log_handler._inspect import PRICE_PER_1000_PUTS, PRICE_PER_GB_MONTH, inspect_prefix
from s3_log_handler._inspect_checks import body_flags, key_flags, partition_date

DAY = "sessions/year=2025/month=10/day=31"


def payload(session_id: str | None = "rm_1", **changes: Any) -> dict[str, Any]:
    """A plan-shaped session payload with ``changes`` applied."""
    data: dict[str, Any] = {"session_id": session_id, "duration_seconds": 300.0,
                            "discovered_signals": {"team_size": 5}}
    data.update(changes)
    if session_id is None:
        del data["session_id"]
    return data


def line(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\n"


#: One object per red flag (key -> (body, the flag inspect must name)).
PLANTED: dict[str, tuple[bytes, str]] = {
    f"{DAY}/no-id.json.gz": (gzip.compress(line(payload(None))), "missing_session_id"),
    f"{DAY}/rm_2.json.gz": (gzip.compress(line(payload("rm_2", discovered_signals={}))),
                            "empty_discovered_signals"),
    f"{DAY}/rm_3.json.zst": (zstandard.ZstdCompressor().compress(
        line(payload("rm_3", duration_seconds=None))), "null_duration_seconds"),
    f"{DAY}/rm_4.json": (json.dumps(payload("rm_4"), indent=2).encode(), "not_json_lines"),
    f"{DAY}/rm_5.json.gz": (b"not gzip at all", "not_json_lines"),
    f"{DAY}/_rm_6.json.gz": (gzip.compress(line(payload("rm_6"))), "hidden_by_hive"),
    "sessions/rm_7.json.gz": (gzip.compress(line(payload("rm_7"))), "outside_partition"),
}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["inspect", *argv])
    out = capsys.readouterr()
    return status, out.out, out.err


class TestRedFlags:
    def test_every_planted_object_is_named_with_its_flag_and_exit_is_1(
            self, s3: Any, bucket: str, moto_endpoint: str,
            capsys: pytest.CaptureFixture[str]) -> None:
        """One object per red flag beside good ones: each is named, the good ones are not."""
        for key, (body, _) in PLANTED.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        for i in range(3):
            s3.put_object(Bucket=bucket, Key=f"{DAY}/good{i}.json.gz",
                          Body=gzip.compress(line(payload(f"good{i}"))))

        status, text, _ = run_cli(capsys, "--bucket", bucket, "--endpoint-url", moto_endpoint,
                                  "--sample", "100")
        assert status == 1
        for key, (_, flag) in PLANTED.items():
            assert f"s3://{bucket}/{key}: {flag}: " in text
        assert "good" not in text.split("RED FLAGS")[1]

        status, out, _ = run_cli(capsys, "--bucket", bucket, "--endpoint-url", moto_endpoint,
                                 "--sample", "100", "--json")
        report = json.loads(out)
        assert status == 1 and report["ok"] is False
        assert {(f["key"], f["flag"]) for f in report["red_flags"]} == {
            (key, flag) for key, (_, flag) in PLANTED.items()}

    def test_a_sample_reads_only_that_many_bodies_but_every_key_is_checked(
            self, s3: Any, bucket: str) -> None:
        """Key flags come from the listing (all objects); body flags from the sample only."""
        for key, (body, _) in PLANTED.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        report = inspect_prefix(s3, bucket, "sessions", sample=0)
        assert report.sampled == []
        assert {f["flag"] for f in report.red_flags} == {"hidden_by_hive", "outside_partition"}

    def test_inspect_makes_only_the_calls_the_reader_policy_allows(
            self, s3: Any, bucket: str) -> None:
        """The client sees ListObjectsV2 and GetObject only: s3:ListBucket and s3:GetObject."""
        for key, (body, _) in PLANTED.items():
            s3.put_object(Bucket=bucket, Key=key, Body=body)
        calls: list[str] = []
        s3.meta.events.register("before-call.s3.*",
                                lambda model, **_: calls.append(model.name))
        inspect_prefix(s3, bucket, "sessions", sample=100)
        assert set(calls) == {"ListObjectsV2", "GetObject"}
        assert READER_ACTIONS == ("s3:ListBucket", "s3:GetObject")


class TestCleanData:
    def test_what_a_real_handler_wrote_has_no_red_flag_and_json_parses(
            self, s3: Any, bucket: str, moto_endpoint: str, analytics_logger: logging.Logger,
            capsys: pytest.CaptureFixture[str]) -> None:
        """Sessions logged through logging: exit 0, today's partition holds them all."""
        handler = S3Handler(bucket, endpoint_url=moto_endpoint)
        analytics_logger.addHandler(handler)
        today = datetime.now(UTC).date()
        for i in range(5):
            analytics_logger.info("Session analytics data",
                                  extra={"analytics_data": payload(f"rm_{i}")})
        assert handler.flush(30)
        if datetime.now(UTC).date() != today:
            pytest.skip("the records straddled midnight UTC: two partitions")

        status, out, _ = run_cli(capsys, "--bucket", bucket, "--endpoint-url", moto_endpoint,
                                 "--json", "--days", "2")
        report = json.loads(out)
        assert status == 0 and report["ok"] is True and report["red_flags"] == []
        assert [(p["year"], p["month"], p["day"], p["objects"]) for p in report["partitions"]
                ] == [(today.year, today.month, today.day, 5)]
        assert report["sample"]["checked"] == 5
        stored = sum(o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
        assert report["stored"] == {"objects": 5, "bytes": stored}
        assert report["estimates"]["puts_per_month"] == 150

        status, text, _ = run_cli(capsys, "--bucket", bucket, "--endpoint-url", moto_endpoint)
        assert status == 0 and "no red flags" in text
        assert "$0.023 per GB-month" in text and "$0.005 per 1,000 PUTs" in text

    def test_days_keeps_only_recent_partitions(self, s3: Any, bucket: str) -> None:
        """--days 2 on 2025-11-02 counts Nov 1 and 2, not Oct 31; storage counts all three."""
        for day in ("2025/month=10/day=31", "2025/month=11/day=01", "2025/month=11/day=02"):
            s3.put_object(Bucket=bucket, Key=f"sessions/year={day}/rm.json.gz",
                          Body=gzip.compress(line(payload())))
        report = inspect_prefix(s3, bucket, "sessions", days=2, today=date(2025, 11, 2))
        assert sorted(report.partitions) == [date(2025, 11, 1), date(2025, 11, 2)]
        assert report.stored_objects == 3


class TestArguments:
    @pytest.mark.parametrize("argv", [
        ["--bucket", "Bad_Bucket"], ["--bucket", "b*"], ["--bucket", "ok-bucket", "--prefix",
                                                         "_hidden"],
        ["--bucket", "ok-bucket", "--prefix", "a/../b"], ["--bucket", "ok-bucket", "--days", "0"],
        ["--bucket", "ok-bucket", "--sample", "-1"]])
    def test_bad_arguments_exit_2_with_a_message_and_no_report(
            self, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
        """A refused value: status 2, the rule on stderr, nothing on stdout."""
        status, out, err = run_cli(capsys, *argv)
        assert status == 2 and out == "" and "must be" in err

    def test_a_bucket_that_cannot_be_read_exits_2(
            self, moto_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
        status, out, err = run_cli(capsys, "--bucket", "no-such-bucket-here",
                                   "--endpoint-url", moto_endpoint)
        assert status == 2 and out == "" and "NoSuchBucket" in err


class TestChecks:
    def test_extra_name_value_segments_are_still_a_partition(self) -> None:
        assert partition_date("p/env=prod/year=2025/month=02/day=03/hour=07/x.json.gz",
                              "p") == date(2025, 2, 3)

    @pytest.mark.parametrize("key", [
        "p/x.json.gz", "p/year=2025/month=13/day=01/x.gz", "p/year=2025/month=1/x.gz",
        "p/misc/year=2025/month=1/day=1/x"])
    def test_no_date_folders_is_outside_any_partition(self, key: str) -> None:
        assert partition_date(key, "p") is None
        assert ("outside_partition" in {f for f, _ in key_flags(key, "p")})

    def test_a_hidden_folder_is_flagged_like_a_hidden_file(self) -> None:
        flags = dict(key_flags("p/.tmp/year=2025/month=1/day=1/x.gz", "p"))
        assert "'.tmp'" in flags["hidden_by_hive"]

    def test_batch_objects_report_how_many_records_are_bad(self) -> None:
        body = gzip.compress(b"".join(line(payload(f"s{i}", duration_seconds=None if i % 2
                                                   else 1.0)) for i in range(4)))
        assert body_flags("x.ndjson.gz", body) == [
            ("null_duration_seconds", "duration_seconds missing or null in 2 of 4 record(s) "
                                      "(first at line 2)")]

    def test_a_json_array_line_is_not_an_object(self) -> None:
        assert body_flags("x.json", b"[1, 2]\n")[0][0] == "not_json_lines"

    def test_estimates_use_the_stated_prices(self, s3: Any, bucket: str) -> None:
        """1 GiB stored costs the GB-month price; 2 objects/day are 60 PUTs a month."""
        for day in ("01", "02"):
            s3.put_object(Bucket=bucket, Key=f"sessions/year=2025/month=11/day={day}/a.json",
                          Body=line(payload()))
        report = inspect_prefix(s3, bucket, "sessions", sample=0)
        report.stored_bytes = 2**30
        estimates = report.estimates()
        assert estimates["storage_usd_per_month"] == PRICE_PER_GB_MONTH
        assert estimates["puts_per_month"] == 30
        assert estimates["put_usd_per_month"] == pytest.approx(30 / 1000 * PRICE_PER_1000_PUTS)


class TestReaderPolicy:
    def test_lists_only_under_the_prefix_and_reads_its_objects(
            self, capsys: pytest.CaptureFixture[str]) -> None:
        """`iam-policy --reader`: ListBucket with an s3:prefix condition, GetObject on p/*."""
        assert main(["iam-policy", "--reader", "--bucket", "bkt", "--prefix", "p"]) == 0
        policy = json.loads(capsys.readouterr().out)
        assert policy == reader_policy("bkt", "p")
        listing, reading = policy["Statement"]
        assert listing["Action"] == "s3:ListBucket"
        assert listing["Resource"] == "arn:aws:s3:::bkt"
        assert listing["Condition"] == {"StringLike": {"s3:prefix": ["p/*"]}}
        assert (reading["Action"], reading["Resource"]) == ("s3:GetObject", "arn:aws:s3:::bkt/p/*")
        assert not any("Put" in s["Action"] or "Delete" in s["Action"]
                       for s in policy["Statement"])

    def test_iam_accepts_the_reader_policy(self, moto_endpoint: str) -> None:
        iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name="us-east-1")
        arn = iam.create_policy(PolicyName="inspect-reader",
                                PolicyDocument=json.dumps(reader_policy("bkt")))["Policy"]["Arn"]
        iam.delete_policy(PolicyArn=arn)

    def test_refused_names_exit_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["iam-policy", "--reader", "--bucket", "bkt", "--prefix", "p/*"]) == 2
        assert capsys.readouterr().out == ""
