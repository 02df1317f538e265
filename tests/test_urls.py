"""The one home of URL handling."""

from loadbench.urls import join_url, origin, redact_url, server_root, v1_root, v1_url


def test_v1_root_and_server_root_accept_both_spellings():
    for base in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/"):
        assert v1_root(base) == "http://h:1/v1"
        assert server_root(base) == "http://h:1"
        assert v1_url(base, "/models") == "http://h:1/v1/models"


def test_join_url_puts_one_slash_between():
    assert join_url("http://h:1/", "/api/tags") == "http://h:1/api/tags"
    assert join_url("http://h:1", "api/tags") == "http://h:1/api/tags"


def test_origin_and_redaction():
    assert origin("https://h:8/v1/chat?x=1") == "https://h:8"
    assert redact_url("https://user:secret@h:8/v1?key=abc") == "https://h:8/v1"
