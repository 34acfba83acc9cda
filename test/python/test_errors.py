"""The Python client's errors and constants come from proto/constants.json:
one exception class per daemon error code, and error_from_daemon types an
Error frame by its code."""
import json
import os

import pytest

from kvtier import constants, errors, framing, proto

TABLE = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..", "proto", "constants.json")))


def test_one_class_per_code_and_error_from_daemon_types_it():
    codes = [e["code"] for e in TABLE["error_codes"]]
    assert list(constants.ERROR_CODES) == codes
    assert set(errors.BY_CODE) == set(codes)
    for code in codes:
        err = errors.error_from_daemon(code, "why")
        assert type(err) is errors.BY_CODE[code]
        assert isinstance(err, errors.KvtierError)
        assert (err.code, err.message, str(err)) == (code, "why", f"{code}: why")
    assert len(set(errors.BY_CODE.values())) == len(codes)


@pytest.mark.parametrize("cls,code", [
    (errors.DaemonUnavailable, "KVT_CONNECTION_CLOSED"), (errors.RequestTimeout, "KVT_TIMEOUT"),
    (errors.ProtocolError, "KVT_BAD_FRAME"), (errors.Forbidden, "KVT_FORBIDDEN"),
])
def test_the_existing_names_keep_their_codes(cls, code):
    assert cls("m").code == code


def test_an_unknown_code_stays_a_plain_kvtier_error():
    err = errors.error_from_daemon("KVT_FROM_A_NEWER_DAEMON", "m")
    assert type(err) is errors.KvtierError and err.code == "KVT_FROM_A_NEWER_DAEMON"
    assert errors.error_from_daemon("", "m").code == "KVT_INTERNAL"


def test_the_sentinel_and_protocol_numbers_are_the_tables():
    assert framing.NO_BLOCK == constants.SKIP_BLOCK == TABLE["skip_block"]["value"]
    assert proto.PROTOCOL_VERSION == constants.PROTOCOL_VERSION == TABLE["protocol"]["version"]["value"]
    assert framing.DEFAULT_MAX_FRAME == TABLE["protocol"]["client_max_frame_bytes"]["value"]
