"""Golden tests: today's behaviour, pinned so a refactor can prove nothing changed.

Committed beside this file, generated from unchanged code:

- ``openapi.json``: the app's OpenAPI document (``create_app(...).openapi()``), stored as
  generated. Nothing in it needed normalising: it holds no path (the test checks that the
  KILN_HOME and catalog paths are absent), no machine-dependent value, and only Kiln's
  own version (``serving.http.app.API_VERSION``); its key order is the code's declaration
  order (identical under PYTHONHASHSEED 0, 1, 2 and other KILN_* settings). The
  comparison ignores object key order anyway (JSON objects are unordered) and reports
  the changed paths and schemas by name. Its ``openapi`` version and schema layout come
  from FastAPI and pydantic: upgrading either may change it, a change to name as any other.
- ``images/<request>.png|svg``: the image each request of ``golden_requests.REQUESTS``
  delivered (one per kind: both families, styles, references, pins, every edit tool,
  OpenAI generate/edit/variation, agentic, upscale, background removal, SVG, a batch
  line), compared as ``golden_files`` says: pixels within the request's tolerance and
  exactly outside an edit's mask, size, mode and PNG text chunks (but the random ids)
  exactly, SVG text.
- ``answers.json``: the stable part of each answer (status, the change of the tenant's
  balance and the credits the answer reports, the delivered image's seed, size, marks
  and license state, its asset's recorded kind, prompt, resolved parameters and
  invisible-mark payload), compared exactly.

A difference must be intended and named in the commit that changes a golden file. The
files change only by regenerating them, which rewrites just the entries that no longer
match (and drops files of requests that are gone):

    KILN_GOLDEN_UPDATE=1 HF_HUB_OFFLINE=1 .venv/bin/python -m pytest tests/golden

Regenerate from committed code (a clean checkout, or ``git archive HEAD``), not from a
working tree that holds someone's uncommitted change: it would land in the goldens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from golden_files import (
    compare_pictures,
    compare_svgs,
    dump_json,
    json_differences,
    normalised_png,
    openapi_report,
    read_png,
)
from golden_requests import BY_NAME, REQUESTS, GoldenRequest

GOLDEN = Path(__file__).parent
IMAGES = GOLDEN / "images"
ANSWERS = GOLDEN / "answers.json"
OPENAPI = GOLDEN / "openapi.json"
UPDATE = os.environ.get("KILN_GOLDEN_UPDATE", "") == "1"
HOW_TO_UPDATE = (
    "If the change is intended, regenerate with KILN_GOLDEN_UPDATE=1 python -m pytest "
    "tests/golden and name the change in the commit."
)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def test_the_openapi_document_is_unchanged(golden_run, kiln_home):
    document = golden_run.app.openapi()
    text = dump_json(document)
    for local in (golden_run.settings.home, kiln_home):  # the app's home, the models'
        assert str(local) not in text, f"the document names a local path: {local}"
    golden = _read_json(OPENAPI)
    if UPDATE and (golden is None or json_differences(golden, document)):
        OPENAPI.write_text(text, encoding="utf-8")
        golden = document
    assert golden is not None, f"no {OPENAPI.name}. {HOW_TO_UPDATE}"
    report = openapi_report(golden, document)
    assert not report, f"the OpenAPI document changed:\n{report}\n{HOW_TO_UPDATE}"


def _image_problems(request: GoldenRequest, data: bytes, golden_run) -> tuple[list[str], str]:
    """What differs from the golden file, and how it was compared."""
    path = IMAGES / f"{request.name}.{request.suffix}"
    if not path.exists():
        return [f"no golden file {path.name}"], "-"
    if request.suffix == "svg":
        exact = _source_exact(request, golden_run)
        how = "as text" if exact else "by structure (its source is within tolerance)"
        return compare_svgs(path.read_text(encoding="utf-8"), data.decode(), exact), how
    tolerance, region = request.tolerance, request.exact_region()
    how = f"within max {tolerance.max}, mean {tolerance.mean}"
    how += ", exactly outside the mask" if region is not None else ""
    return compare_pictures(read_png(path.read_bytes()), read_png(data), tolerance, region), how


def _source_exact(request: GoldenRequest, golden_run) -> bool:
    """Whether the image an SVG traces matched its golden's pixels exactly: then the SVG
    must match as text (vtracer is deterministic: same pixels, same text), else only by
    structure (a one-level colour change may move an outline)."""
    (source,) = request.after
    golden = IMAGES / f"{source}.{BY_NAME[source].suffix}"
    if not golden.exists():
        return False
    expected = read_png(golden.read_bytes()).pixels
    actual = read_png(golden_run.result(source).data).pixels
    return expected.shape == actual.shape and bool(np.array_equal(expected, actual))


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: r.name)
def test_the_delivered_image_is_unchanged(golden_run, request_: GoldenRequest):
    delivered = golden_run.result(request_.name)
    problems, how = _image_problems(request_, delivered.data, golden_run)
    answers = _read_json(ANSWERS) or {}
    answer_changes = json_differences(answers.get(request_.name), delivered.answer)
    if UPDATE and problems:
        IMAGES.mkdir(exist_ok=True)
        path = IMAGES / f"{request_.name}.{request_.suffix}"
        if request_.suffix == "svg":
            path.write_bytes(delivered.data)
        else:
            path.write_bytes(normalised_png(read_png(delivered.data)))
        problems = []
    if UPDATE and answer_changes:
        answers[request_.name] = delivered.answer
        order = {r.name: i for i, r in enumerate(REQUESTS)}
        ordered = dict(sorted(answers.items(), key=lambda kv: order.get(kv[0], len(order))))
        ANSWERS.write_text(dump_json(ordered), encoding="utf-8")
        answer_changes = []
    problems += [f"answer {line}" for line in answer_changes]
    assert not problems, (
        f"{request_.name} ({request_.covers}; compared {how}) changed:\n"
        + "\n".join(problems)
        + f"\n{HOW_TO_UPDATE}"
    )


def test_every_golden_file_belongs_to_a_request():
    wanted = {f"{r.name}.{r.suffix}" for r in REQUESTS}
    stray = sorted(p for p in IMAGES.glob("*") if p.name not in wanted)
    answers = _read_json(ANSWERS) or {}
    stray_answers = sorted(set(answers) - set(BY_NAME))
    if UPDATE:
        for path in stray:
            path.unlink()
        if stray_answers:
            kept = {k: v for k, v in answers.items() if k in BY_NAME}
            ANSWERS.write_text(dump_json(kept), encoding="utf-8")
        return
    assert not stray, f"golden files of no request: {[p.name for p in stray]}. {HOW_TO_UPDATE}"
    assert not stray_answers, f"answers of no request: {stray_answers}. {HOW_TO_UPDATE}"
