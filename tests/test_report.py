"""``testbed report``: one self-contained HTML file for a run, a sweep and a comparison, with the
expected sections and no external reference at all (checked always; rendered in a headless browser
where one is installed)."""

from __future__ import annotations

import html.parser
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from testbed import errors
from testbed.cli import main
from testbed.run.report import build_report, write_report
from tests.conftest import base_scenario

_REF_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "data", "poster", "srcset", "background",
              "manifest", "codebase", "cite", "longdesc", "ping"}


class _Refs(html.parser.HTMLParser):
    """Every reference-bearing attribute and every tag of a document."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: set[str] = set()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for k, v in attrs:
            if k in _REF_ATTRS:
                self.refs.append((tag, k, v or ""))
            if k == "id" and v:
                self.ids.add(v)
            if k == "style" and v and "url(" in v:
                self.refs += [(tag, "style", u) for u in re.findall(r"url\(\s*['\"]?([^'\")]*)", v)]


def external_references(text: str) -> list[str]:
    """Everything in an HTML text that a browser could fetch: src/href-like attributes and CSS url()
    other than data: URIs and #fragments, @import, <link>, <script src>, <base>, meta refresh."""
    p = _Refs()
    p.feed(text)
    bad = [f"{t} {k}={v[:60]!r}" for t, k, v in p.refs if not (v.startswith("#") or v.startswith("data:"))]
    bad += [f"url({u})" for u in re.findall(r"url\(\s*['\"]?([^'\")]*)", text) if not u.startswith(("#", "data:"))]
    bad += [f"<{t}>" for t in ("link", "base", "iframe", "object", "embed") if t in p.tags]
    bad += ["@import"] if "@import" in text else []
    bad += ["meta refresh"] if re.search(r"http-equiv\s*=\s*['\"]?refresh", text, re.I) else []
    return bad


def _ids(text: str) -> set[str]:
    p = _Refs()
    p.feed(text)
    return p.ids


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("report")
    fast = base_scenario(duration="5 s", warmup="1 s")
    slow = base_scenario(duration="5 s", warmup="1 s", drain="0.5 s")
    slow["link"]["datarate"] = "150 kB/s"        # overloaded: warnings, an unfinished share
    sweep = base_scenario(duration="4 s", warmup="1 s", replications=1)
    sweep["sweep"] = {"fleet.0.count": [5, 20]}
    for name, raw in (("fast", fast), ("slow", slow), ("sweep", sweep)):
        (d / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    assert main(["run", str(d / "fast.yaml"), "--out", str(d / "fast")]) == 0
    assert main(["run", str(d / "slow.yaml"), "--out", str(d / "slow")]) == 0
    assert main(["sweep", str(d / "sweep.yaml"), "--out", str(d / "sw")]) == 0
    assert main(["compare", str(d / "fast"), str(d / "slow"), "--out", str(d / "cmp")]) == 0
    return {"run": d / "slow", "sweep": d / "sw", "comparison": d / "cmp", "fast": d / "fast"}


@pytest.mark.parametrize(("kind", "sections", "words"), [
    ("run", {"warnings", "summary", "stations", "figures", "scenario", "fig-latency_cdf", "fig-breakdown",
             "fig-timeline"}, ["overload: uplink", "unfinished", "p95 (all; unfinished = late)", "datarate: 150 kB/s"]),
    ("sweep", {"warnings", "sweep-table", "figures", "scenario", "fig-percentiles", "fig-breakdown",
               "fig-utilisation", "fig-latency_cdf_fleet_0_count"}, ["nodes in fleet &#x27;cams&#x27;", "20 nodes"]),
    ("comparison", {"warnings", "summary", "figures", "scenario", "fig-latency_cdf"}, ["not completed", "slow"]),
])
def test_report_is_self_contained_with_its_sections(dirs: dict[str, Path], tmp_path: Path, kind: str,
                                                    sections: set[str], words: list[str]) -> None:
    out = write_report(dirs[kind], tmp_path / f"{kind}.html")
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count("<svg") >= 1
    assert external_references(text) == []
    assert sections <= _ids(text)
    for w in words:
        assert w in text, w
    assert not re.search(r"<script|<link|https?://(?!www\.w3\.org/(2000/svg|1999/xlink))", text)


def test_the_checker_catches_external_references() -> None:
    for bad in ('<img src="http://x/y.png">', '<link rel="stylesheet" href="a.css">', '<script src="x.js"></script>',
                "<style>body{background:url(https://x/y.png)}</style>", '<a href="https://example.org">x</a>',
                '<svg><image xlink:href="file:///etc/passwd"/></svg>', "<style>@import 'x.css';</style>"):
        assert external_references(bad), bad
    assert external_references('<a href="#fig">x</a><img src="data:image/png;base64,AAAA">') == []


def test_refused_without_force_and_written_atomically(dirs: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "r.html"
    target.write_text("old")
    with pytest.raises(errors.TestbedError, match="--force"):
        write_report(dirs["fast"], target)
    assert main(["report", str(dirs["fast"]), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err and target.read_text() == "old"
    assert main(["report", str(dirs["fast"]), "--out", str(target), "--force"]) == 0
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".testbed-tmp-")]
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path)]) == 2      # a folder holding none of the three
    assert capsys.readouterr().err.count("error: ") == 2


def _browser() -> list[str] | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        exe = shutil.which(name)
        if exe:
            return [exe, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"]
    exe = shutil.which("firefox")
    return [exe, "--headless", "--screenshot"] if exe else None


def test_report_renders_offline_in_a_headless_browser(dirs: dict[str, Path], tmp_path: Path) -> None:
    cmd = _browser()
    if cmd is None:
        pytest.skip("no headless browser (chromium, google-chrome or firefox) installed")
    out = write_report(dirs["sweep"], tmp_path / "sweep.html")
    if "--dump-dom" in cmd:
        done = subprocess.run([*cmd, out.as_uri()], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0 and 'id="figures"' in done.stdout and "<svg" in done.stdout
    else:
        shot = tmp_path / "shot.png"
        done = subprocess.run([*cmd, str(shot), out.as_uri()], capture_output=True, timeout=120, check=False)
        assert done.returncode == 0 and shot.stat().st_size > 10_000


def test_build_report_needs_no_output(dirs: dict[str, Path]) -> None:
    assert "<section id=\"figures\">" in build_report(dirs["fast"])
