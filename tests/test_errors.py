"""The proxy's short answers: printable and on one line whatever the reason holds (nginx's door
carries them in a header)."""

from __future__ import annotations

import re

import pytest
from django.test import RequestFactory

from proxy import errors
from proxy.nginx import front_refusal


@pytest.mark.parametrize("accept", ["text/html", "application/json"])
def test_it_words_a_reason_with_line_breaks_on_one_line_for_both_doors(accept: str) -> None:
    request = RequestFactory().get("/pacs/dicom-web/studies", headers={"Accept": accept})
    answer = errors.refusal(request, 400, "two\r\nlines\nhere, \x1fa unit separator and \x7f")
    assert not re.search(rb"[\x00-\x1f\x7f]", answer.content.removesuffix(b"\n"))
    carried = front_refusal(answer)
    assert (carried.status_code, carried["X-Pacs-Status"]) == (403, "400")
