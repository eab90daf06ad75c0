"""Parsing a batch file: the HTTP request models and pre-reservation checks decide what is
valid, refusals carry their line numbers, paths are inlined, seeds are derived per line."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from batch_helpers import agentic_line, edit_line, gen, png_b64, write_images

from serving.core.batches.lines import derived_seed
from serving.core.settings import Settings
from serving.http.batch.parsing import is_path, parse_batch


def parse(lines, tmp_path: Path, catalog, base_dir: Path | None = None, **settings):
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines)
    return parse_batch(
        text,
        base_dir=tmp_path if base_dir is None else base_dir,
        catalog=catalog,
        settings=Settings(home=tmp_path, **settings),
    )


def test_each_kind_parses_with_its_model_images_and_seed(tmp_path, catalog):
    write_images(tmp_path)
    lines, invalid = parse(
        [gen(n=2), edit_line(), agentic_line(), gen(model="tiny-sdxl", seed=7)], tmp_path, catalog
    )
    assert invalid == []
    assert [(x.number, x.kind, x.model, x.images) for x in lines] == [
        (1, "generation", "tiny-sd15", 2),
        (2, "edit", "tiny-sd15", 1),
        (3, "agentic", "tiny-sd15", 1),
        (4, "generation", "tiny-sdxl", 1),
    ]
    assert "kind" not in lines[0].request
    assert lines[3].request["seed"] == 7  # a given seed is kept
    cat = base64.b64encode((tmp_path / "in" / "cat.png").read_bytes()).decode()
    # Paths are inlined as the file's base64; the recorded form keeps only a digest.
    assert lines[1].request["image"] == cat
    assert lines[2].request["references"][0]["image"] == cat
    digest = "sha256:" + hashlib.sha256(cat.encode()).hexdigest()
    assert lines[1].recorded["image"] == digest
    assert lines[2].recorded["references"][0]["image"] == digest
    assert lines[1].recorded["prompt"] == "a blue pot"


def test_derived_seeds_are_stable_and_differ_by_line(tmp_path, catalog):
    first, _ = parse([gen(), gen(), gen("other")], tmp_path, catalog)
    again, _ = parse([gen(), gen(), gen("other")], tmp_path, catalog)
    seeds = [line.request["seed"] for line in first]
    assert seeds == [line.request["seed"] for line in again]
    assert len(set(seeds)) == 3  # the same request on two lines makes two images
    request = dict(gen())
    request.pop("kind")
    assert seeds[0] == derived_seed(1, "generation", request)
    assert all(0 <= seed < 2**32 for seed in seeds)


def test_blank_lines_are_skipped_but_numbered(tmp_path, catalog):
    lines, invalid = parse(["", gen(), "   ", gen()], tmp_path, catalog)
    assert invalid == []
    assert [line.number for line in lines] == [2, 4]


def test_invalid_lines_are_reported_with_their_numbers(tmp_path, catalog):
    write_images(tmp_path)
    bad = [
        gen(),  # 1: fine
        "{not json",  # 2
        "[1, 2]",  # 3
        {"model": "tiny-sd15", "prompt": "x"},  # 4: no kind
        {"kind": "upscale", "prompt": "x"},  # 5
        {"kind": "generation", "model": "tiny-sd15"},  # 6: no prompt
        gen(steps="2"),  # 7: pydantic (strict)
        gen(colour="red"),  # 8: unknown field
        gen(model="no-such-model"),  # 9
        gen(resolution="8K"),  # 10: to_params
        gen(scheduler="nope"),  # 11
        edit_line(image="in/missing.png"),  # 12
        edit_line(image=png_b64()[:40]),  # 13: not an image
        edit_line(mask=png_b64((32, 32), 255, "L")),  # 14: mask size
        edit_line(tool="erase", mask=None),  # 15: erase needs a mask
        agentic_line(candidates=9),  # 16: over KILN_AGENTIC_MAX_CANDIDATES
        agentic_line(references=None),  # 17: neither references nor recipe
        edit_line(tool="instruct", model=None, mask=None, prompt=None, instruction="x", n=13),
        "[" * 50_000 + "]" * 50_000,  # 19: past the parser's recursion limit (was a 500)
    ]
    lines, invalid = parse(bad, tmp_path, catalog)
    assert [line.number for line in lines] == [1]
    messages = {x.number: x.message for x in invalid}
    assert sorted(messages) == list(range(2, 20))
    assert messages[19] == "line 19: not valid JSON: nested too deeply"
    assert all(message.startswith(f"line {n}: ") for n, message in messages.items())
    assert "not valid JSON" in messages[2]
    assert "must be a JSON object" in messages[3]
    assert "kind: field required" in messages[4]
    assert "unknown kind 'upscale'" in messages[5]
    assert messages[6] == "line 6: prompt: give a prompt, image_to_prompt, or both"
    assert messages[7].startswith("line 7: steps:")
    assert messages[8] == "line 8: colour: unknown field"
    assert "model: unknown model 'no-such-model'" in messages[9]
    assert "resolution '8K' is not offered" in messages[10]
    assert "unknown scheduler 'nope'" in messages[11]
    assert "image: no file in/missing.png" in messages[12]
    assert messages[13] == "line 13: image is not an image Kiln can read (PNG, JPEG, WebP)"
    assert "mask is 32x32, the image 64x64" in messages[14]
    assert "mask: erase needs a mask" in messages[15]
    assert "candidates must be at most 4" in messages[16]
    assert "exactly one of references and recipe" in messages[17]
    assert messages[18].startswith("line 18: n:")


def test_images_over_the_byte_limit_are_refused(tmp_path, catalog):
    write_images(tmp_path)
    size = (tmp_path / "in" / "cat.png").stat().st_size
    _, invalid = parse([edit_line()], tmp_path, catalog, image_max_bytes=size - 1)
    assert "over the limit" in invalid[0].message and "KILN_IMAGE_MAX_BYTES" in invalid[0].message


def test_without_a_folder_paths_are_refused_and_base64_is_taken(tmp_path, catalog):
    write_images(tmp_path)
    text = "\n".join(
        json.dumps(x)
        for x in (edit_line(), edit_line(image=png_b64(), mask=png_b64(colour=255, mode="L")))
    )
    settings = Settings(home=tmp_path)
    lines, invalid = parse_batch(text, base_dir=None, catalog=catalog, settings=settings)
    assert [line.number for line in lines] == [2]
    assert invalid[0].number == 1
    assert "file paths are not accepted here" in invalid[0].message


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("in/cat.png", True),
        ("../x.jpg", True),
        (png_b64(), False),
        ("data:image/png;base64,AA", False),
    ],
)
def test_a_path_is_told_from_base64_by_its_dot(value, path):
    assert is_path(value) is path


def test_recipe_thumbnails_and_image_formats_are_checked_before_anything_runs(tmp_path, catalog):
    import io

    import numpy as np
    from PIL import Image

    from agentic.recipe import extract_recipe

    write_images(tmp_path)
    recipe = extract_recipe([np.full((32, 32, 3), 90, np.uint8)]).to_json()
    empty = json.loads(json.dumps(recipe))
    empty["references"][0]["composition"]["thumbnail_png"] = ""
    gif = io.BytesIO()
    Image.new("RGB", (64, 64)).save(gif, format="GIF")
    lines, invalid = parse(
        [
            agentic_line(references=None, recipe=recipe),
            agentic_line(references=None, recipe=empty),
            edit_line(image=base64.b64encode(gif.getvalue()).decode()),
        ],
        tmp_path,
        catalog,
    )
    assert [line.number for line in lines] == [1]
    assert [x.message for x in invalid] == [
        "line 2: recipe.references.0.composition.thumbnail_png is empty",
        "line 3: image is a GIF image: Kiln takes still PNG, JPEG and WebP images",
    ]


def test_flux_lines_parse_and_their_family_rules_refuse_by_line(tmp_path, catalog):
    """A batch file takes the FLUX models like any other; what their family refuses over
    HTTP (guidance on [klein], a style strength without a style, an SD scheduler) is refused
    here too, with its line number, before anything is reserved."""
    lines, invalid = parse(
        [
            gen(model="tiny-flux1", n=2),
            gen(model="tiny-flux2-klein", guidance=3.0),
            gen(model="tiny-flux1", style_strength=0.5),
            gen(model="tiny-flux1", scheduler="euler"),
            gen(model="tiny-flux2-klein"),
        ],
        tmp_path,
        catalog,
    )
    assert [(x.number, x.model, x.images) for x in lines] == [
        (1, "tiny-flux1", 2),
        (5, "tiny-flux2-klein", 1),
    ]
    messages = {x.number: x.message for x in invalid}
    assert set(messages) == {2, 3, 4}
    assert "guidance" in messages[2] and "style" in messages[3] and "flow_euler" in messages[4]
