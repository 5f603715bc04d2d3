from __future__ import annotations

from gateway import errors


def test_codes_are_unique_and_stable() -> None:
    seen: dict[str, type[errors.GatewayError]] = {}
    stack: list[type[errors.GatewayError]] = [errors.GatewayError]
    while stack:
        cls = stack.pop()
        assert cls.code not in seen or seen[cls.code] is cls, cls.code
        seen[cls.code] = cls
        stack.extend(cls.__subclasses__())
    assert errors.all_codes()["SignatureInvalid"] is errors.SignatureInvalid


def test_retryable_is_a_class_property() -> None:
    assert errors.TransportFailed.retryable
    assert not errors.TransportRefused.retryable
    assert not errors.SignatureInvalid.retryable


def test_str_names_place() -> None:
    exc = errors.SchemaInvalid("2 errors", where="a.xml")
    assert str(exc) == "a.xml: 2 errors"
    assert exc.to_dict()["code"] == "SchemaInvalid"
