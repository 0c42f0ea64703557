from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from pacsportal.env import env_bool, env_int, env_list, env_secret


def test_it_parses_booleans_strictly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAG", "Yes")
    assert env_bool("FLAG", False) is True
    monkeypatch.setenv("FLAG", "off")
    assert env_bool("FLAG", True) is False
    monkeypatch.setenv("FLAG", "")
    assert env_bool("FLAG", True) is True


def test_it_refuses_a_boolean_typo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAG", "flase")
    with pytest.raises(ImproperlyConfigured, match="FLAG='flase' is not a boolean"):
        env_bool("FLAG", True)


def test_it_refuses_bad_and_out_of_range_integers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTNUM", "80a")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("PORTNUM", 1)
    monkeypatch.setenv("PORTNUM", "70000")
    with pytest.raises(ImproperlyConfigured, match="out of range"):
        env_int("PORTNUM", 1, minimum=1, maximum=65535)
    monkeypatch.setenv("PORTNUM", "8042")
    assert env_int("PORTNUM", 1, minimum=1, maximum=65535) == 8042


def test_it_splits_lists_and_drops_blanks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTS", " a.example, ,b.example ")
    assert env_list("HOSTS") == ["a.example", "b.example"]


def test_it_reads_secrets_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cret\n")
    monkeypatch.delenv("TOKEN", raising=False)
    monkeypatch.setenv("TOKEN_FILE", str(secret_file))
    assert env_secret("TOKEN") == "s3cret"
    monkeypatch.setenv("TOKEN", "other")
    with pytest.raises(ImproperlyConfigured, match="not both"):
        env_secret("TOKEN")
    monkeypatch.delenv("TOKEN")
    monkeypatch.setenv("TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="cannot read"):
        env_secret("TOKEN")
