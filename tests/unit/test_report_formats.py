"""JUnit XML, Markdown and HTML renderers over real `modelport.report/1` documents.

The reports are made by the real serializer (`report_json`) from real result objects, with
numbers from the real comparator on seeded arrays: one model with a passed, a failed (tolerance
and budget), an error and a skipped target, and one model whose path is an HTML injection."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from modelport.results import ConvertResult, NumericResult, TargetResult, Verdict
from modelport.validators.compare import Tolerance
from modelport.validators import report_formats
from modelport.validators.compare import HISTOGRAM_BINS, HISTOGRAM_FLOOR, compare_output
from modelport.validators.latency import Latency
from modelport.validators.report import report_json

MALICIOUS = "models/<img src=x onerror=alert(1)>.pt2"
ERROR_TEXT = ("Conversion failed: onnx2tf cannot convert op GridSample (node /grid_sample) <script>alert(2)</script>"
              "\n\x1b[31mTraceback tail: NotImplementedError\x1b[0m\nTry --via onnx,savedmodel or another opset.")

# The Jenkins/Ant JUnit schema (jenkins-junit.xsd), reduced to what CI viewers read.
JUNIT_XSD = r"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" elementFormDefault="qualified">
  <xs:simpleType name="SUREFIRE_TIME">
    <xs:restriction base="xs:string">
      <xs:pattern value="(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]{0,3})?"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:complexType name="outcome" mixed="true">
    <xs:attribute name="message" type="xs:string"/>
    <xs:attribute name="type" type="xs:string"/>
  </xs:complexType>
  <xs:element name="failure" type="outcome"/>
  <xs:element name="error" type="outcome"/>
  <xs:element name="skipped">
    <xs:complexType mixed="true">
      <xs:attribute name="message" type="xs:string"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="system-out" type="xs:string"/>
  <xs:element name="system-err" type="xs:string"/>
  <xs:element name="property">
    <xs:complexType>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="value" type="xs:string" use="required"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="properties">
    <xs:complexType>
      <xs:sequence><xs:element ref="property" maxOccurs="unbounded"/></xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:element name="testcase">
    <xs:complexType>
      <xs:sequence>
        <xs:choice minOccurs="0" maxOccurs="unbounded">
          <xs:element ref="skipped"/><xs:element ref="error"/><xs:element ref="failure"/>
          <xs:element ref="system-out"/><xs:element ref="system-err"/>
        </xs:choice>
      </xs:sequence>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="assertions" type="xs:string"/>
      <xs:attribute name="time" type="SUREFIRE_TIME"/>
      <xs:attribute name="classname" type="xs:string"/>
      <xs:attribute name="status" type="xs:string"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="testsuite">
    <xs:complexType>
      <xs:sequence>
        <xs:element ref="properties" minOccurs="0"/>
        <xs:element ref="testcase" minOccurs="0" maxOccurs="unbounded"/>
        <xs:element ref="system-out" minOccurs="0"/>
        <xs:element ref="system-err" minOccurs="0"/>
      </xs:sequence>
      <xs:attribute name="name" type="xs:string" use="required"/>
      <xs:attribute name="tests" type="xs:nonNegativeInteger" use="required"/>
      <xs:attribute name="failures" type="xs:nonNegativeInteger"/>
      <xs:attribute name="errors" type="xs:nonNegativeInteger"/>
      <xs:attribute name="skipped" type="xs:nonNegativeInteger"/>
      <xs:attribute name="disabled" type="xs:nonNegativeInteger"/>
      <xs:attribute name="time" type="SUREFIRE_TIME"/>
      <xs:attribute name="timestamp" type="xs:string"/>
      <xs:attribute name="hostname" type="xs:string"/>
      <xs:attribute name="id" type="xs:string"/>
      <xs:attribute name="package" type="xs:string"/>
      <xs:attribute name="file" type="xs:string"/>
    </xs:complexType>
  </xs:element>
  <xs:element name="testsuites">
    <xs:complexType>
      <xs:sequence><xs:element ref="testsuite" minOccurs="0" maxOccurs="unbounded"/></xs:sequence>
      <xs:attribute name="name" type="xs:string"/>
      <xs:attribute name="time" type="SUREFIRE_TIME"/>
      <xs:attribute name="tests" type="xs:nonNegativeInteger"/>
      <xs:attribute name="failures" type="xs:nonNegativeInteger"/>
      <xs:attribute name="disabled" type="xs:nonNegativeInteger"/>
      <xs:attribute name="errors" type="xs:nonNegativeInteger"/>
    </xs:complexType>
  </xs:element>
</xs:schema>
"""


def _latency(p50: float) -> Latency:
    return Latency(runs=20, warmup=3, threads=1, p50=p50, p90=p50 * 1.2, p99=p50 * 1.6, mean=p50 * 1.1, min=p50 * 0.9)


def _source(path: str) -> dict:
    return {"path": path, "format": "pt2", "framework": "torch", "evidence": "zip with models/ (torch.export archive)",
            "size_bytes": 39999, "sha256": "7a7483aa188e6910c759db5a51efcbbb1fe150f94faa1e2746480d4875dd79bf",
            "inputs": [{"name": "image", "shape": ["batch", 3, 32, 32], "dtype": "float32"}],
            "outputs": [{"name": "probs", "shape": ["batch", 10], "dtype": "float32"},
                        {"name": "features", "shape": ["batch", 8, 16, 16], "dtype": "float32"}]}


def sample_reports() -> list[dict]:
    """Two real report documents (see the module docstring)."""
    rng = np.random.default_rng(0)
    tol = Tolerance(1e-4, 1e-3)
    probs = [rng.dirichlet(np.ones(10), size=2).astype(np.float32) for _ in range(3)]
    features = [rng.standard_normal((2, 8, 16, 16)).astype(np.float32) for _ in range(3)]

    def noisy(arrays: list[np.ndarray], scale: float) -> list[np.ndarray]:
        return [a + rng.normal(0, scale, a.shape).astype(np.float32) for a in arrays]

    def numeric(prob_noise: float, feature_noise: float) -> NumericResult:
        return NumericResult(tol.atol, tol.rtol, 3, [compare_output("probs", probs, noisy(probs, prob_noise), tol),
                                                     compare_output("features", features,
                                                                    noisy(features, feature_noise), tol)])

    onnx = TargetResult("onnx", Verdict.passed(), path=Path("out/model.onnx"), size_bytes=17768, sha256="99" * 32,
                        seconds=2.2339, numeric=numeric(1e-8, 1e-8), latency=_latency(0.0425),
                        reference_latency=_latency(8.84), plan=("pt2", "onnx"))
    # Worst output: probs (0.03) beats features (~3e-3): both fail, the renderers must name probs.
    tflite = TargetResult("tflite", Verdict.failed("Budget latency_p50_ms broken: 20.1 > 15."),
                          path=Path("out/model.tflite"), size_bytes=8904, sha256="58" * 32, seconds=5.6959,
                          numeric=numeric(1e-2, 1e-3), latency=_latency(20.1), reference_latency=_latency(8.84),
                          plan=("pt2", "onnx", "tflite"))
    tflite.budgets = [{"name": "latency_p50_ms", "limit": 15.0, "value": 20.1, "passed": False},
                      {"name": "size_mb", "limit": 5, "value": 0.0085, "passed": True}]
    tfjs = TargetResult("tfjs", Verdict.error(ERROR_TEXT, 3), seconds=3.7,
                        plan=("pt2", "onnx", "savedmodel", "tfjs"))
    torchscript = TargetResult("torchscript", Verdict.skipped("not requested by this platform's config"),
                               plan=("pt2", "torchscript"))
    first = ConvertResult(source=_source("models/classifier.pt2"), targets=[onnx, tflite, tfjs, torchscript],
                          converter_runs={"torch2onnx": 1, "onnx2tf": 1})
    clean = TargetResult("onnx", Verdict.passed(), path=Path("out/evil.onnx"), size_bytes=17768, seconds=1.5,
                         numeric=numeric(0.0, 0.0), latency=_latency(0.05), reference_latency=_latency(9.0),
                         plan=("pt2", "onnx"))
    second = ConvertResult(source=_source(MALICIOUS), targets=[clean], converter_runs={"torch2onnx": 1})
    return [report_json(first, 1), report_json(second, 1)]


@pytest.fixture(scope="module")
def reports() -> list[dict]:
    return sample_reports()


# --- compare.py: the histogram the HTML plots ------------------------------------------------

def test_histogram_counts_every_element_on_log_bins_up_to_the_max():
    ref = [np.zeros((4, 5), np.float32), np.ones((4, 5), np.float32)]
    cand = [ref[0].copy(), ref[1] + np.linspace(0, 1e-3, 20, dtype=np.float32).reshape(4, 5)]
    result = compare_output("y", ref, cand, Tolerance(1e-2, 0.0))
    hist = result.to_json()["abs_diff_histogram"]
    assert len(hist["edges"]) == HISTOGRAM_BINS + 1 and len(hist["counts"]) == HISTOGRAM_BINS
    assert hist["edges"][0] == HISTOGRAM_FLOOR
    assert hist["edges"][-1] == pytest.approx(result.max_abs_diff, rel=1e-5)
    assert np.all(np.diff(np.log(hist["edges"])) > 0)
    assert sum(hist["counts"]) == 40  # both samples; exact matches land in the first bin
    assert hist["counts"][0] >= 21


def test_histogram_is_null_when_shapes_differ_and_old_fields_stay():
    result = compare_output("y", [np.zeros((1, 3))], [np.zeros((3, 1))], Tolerance(1e-4, 1e-3))
    data = result.to_json()
    assert data["abs_diff_histogram"] is None
    assert {"name", "max_abs_diff", "max_rel_diff", "mean_abs_diff", "cosine", "passed", "worst_sample"} <= set(data)


# --- JUnit -------------------------------------------------------------------------------------

def _validate_xsd(xml_text: str) -> None:
    try:
        import xmlschema
    except ImportError:
        lxml_etree = pytest.importorskip("lxml.etree", reason="neither xmlschema nor lxml is installed")
        schema = lxml_etree.XMLSchema(lxml_etree.fromstring(JUNIT_XSD.encode()))
        schema.assertValid(lxml_etree.fromstring(xml_text.encode()))
        return
    xmlschema.XMLSchema(JUNIT_XSD).validate(xml_text)


def test_junit_validates_against_the_jenkins_schema(reports):
    _validate_xsd(report_formats.junit_xml(reports))


def test_the_xsd_really_rejects_bad_junit():
    # Guard against a schema so loose it passes anything.
    xmlschema = pytest.importorskip("xmlschema")
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        xmlschema.XMLSchema(JUNIT_XSD).validate('<testsuites><testsuite name="x"><testcase/></testsuite></testsuites>')


def test_junit_counts_names_and_failure_text(reports):
    root = ET.fromstring(report_formats.junit_xml(reports))
    first, second = root.findall("testsuite")
    assert first.get("name") == "models/classifier.pt2" and second.get("name") == MALICIOUS
    cases = {c.get("name"): c for c in first.findall("testcase")}
    assert list(cases) == ["onnx:probs", "onnx:features", "tflite:probs", "tflite:features",
                           "tflite:budget:latency_p50_ms", "tflite:budget:size_mb", "tfjs", "torchscript"]
    assert {c.get("classname") for c in first.findall("testcase")} == {
        "modelport.onnx", "modelport.tflite", "modelport.tfjs", "modelport.torchscript"}
    counts = tuple(first.get(k) for k in ("tests", "failures", "errors", "skipped"))
    assert counts == ("8", "3", "1", "1")
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("10", "3", "1")
    # Conversion time once per target, on its first case; suites and the root add them up.
    assert cases["tflite:probs"].get("time") == "5.696" and cases["tflite:features"].get("time") == "0.000"
    assert cases["tfjs"].get("time") == "3.700"
    assert first.get("time") == f"{2.2339 + 5.6959 + 3.7:.3f}"
    assert root.get("time") == f"{2.2339 + 5.6959 + 3.7 + 1.5:.3f}"

    failure = cases["tflite:probs"].find("failure")
    assert failure.get("type") == "ToleranceExceeded"
    assert failure.get("message").startswith("probs: max abs diff")
    for needle in ("max abs diff", "max rel diff", "mean abs diff", "cosine", "atol: 0.0001", "rtol: 0.001",
                   "worst sample", "conversion: pt2 -> onnx -> tflite"):
        assert needle in failure.text
    budget = cases["tflite:budget:latency_p50_ms"].find("failure")
    assert budget.get("type") == "BudgetExceeded" and "20.1 > limit 15" in budget.get("message")
    assert list(cases["tflite:budget:size_mb"]) == []  # a kept budget is a passing case
    error = cases["tfjs"].find("error")
    assert "GridSample" in error.get("message") and "\n" not in error.get("message")
    assert "Try --via onnx,savedmodel" in error.text and "\x1b" not in error.text  # ANSI colour stripped
    assert cases["torchscript"].find("skipped").get("message") == "not requested by this platform's config"
    assert cases["onnx:probs"].find("failure") is None


def test_junit_survives_control_characters_and_empty_input():
    report = sample_reports()[0]
    report["targets"][2]["error"] = "bad byte \x00 and \x07 bell"
    ET.fromstring(report_formats.junit_xml([report]))  # would raise on an XML-illegal character
    empty = ET.fromstring(report_formats.junit_xml([]))
    assert empty.get("tests") == "0" and empty.findall("testsuite") == []


# --- Markdown ----------------------------------------------------------------------------------

def test_markdown_has_verdict_table_worst_output_and_errors(reports):
    text = report_formats.markdown(reports)
    assert text.startswith("## ❌ modelport: failed")
    assert ("| target | status | size | max abs diff | cosine | p50 ms | reference p50 ms | conversion path "
            "| seconds |") in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert any(r.startswith("| tflite | ❌ failed | 8.7 KB |") and "pt2 → onnx → tflite" in r for r in rows)
    assert any(r.startswith("| onnx | ✅ passed | 17.4 KB |") and "| 8.84 |" in r for r in rows)
    assert any(r.startswith("| tfjs | 💥 error |") for r in rows)
    assert any(r.startswith("| torchscript | ⏭️ skipped |") for r in rows)
    failures = text.split("### Failures", 1)[1]
    worst = next(line for line in failures.splitlines() if "worst output" in line)
    assert "**tflite**" in worst and "worst output `probs`" in worst
    assert "max abs diff" in worst and "cosine" in worst and "atol 0.0001" in worst
    assert "budget latency\\_p50\\_ms = 20.1 > limit 15" in failures
    assert "- 💥 **tfjs** of `models/classifier.pt2`: error\n  ```text\n  Conversion failed: onnx2tf" in failures
    assert "  Try --via onnx,savedmodel or another opset.\n  ```" in failures  # the error's own lines, fenced


def test_markdown_escapes_user_text(reports):
    text = report_formats.markdown(reports)
    outside_code = re.sub(r"(`+)[^`]*?\1", "", text)  # code spans and fences are shown literally
    assert "<img" not in outside_code and "<script" not in outside_code
    assert f"`{MALICIOUS}`" in text


def test_markdown_all_passed():
    report = sample_reports()[1]
    report["source"]["path"] = "ok.pt2"
    text = report_formats.markdown([report])
    assert text.startswith("## ✅ modelport: passed") and "### Failures" not in text


# --- HTML --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page(reports) -> str:
    pytest.importorskip("matplotlib", reason="the HTML report needs the `report` extra")
    return report_formats.html(reports)


def test_html_is_self_contained(page):
    assert page.count("<svg") == 2 * 3 + 3  # a histogram per output of onnx, tflite, evil; a latency chart each
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and "@import" not in page and "url(http" not in page
    assert "<link" not in page.lower() and "<img" not in page.lower() and "<iframe" not in page.lower()
    assert "default-src 'none'" in page  # the browser itself refuses any fetch


def test_html_escapes_paths_and_errors(page):
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "\x1b" not in page


def test_html_svg_ids_are_unique_and_references_resolve(page):
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    for ref in set(re.findall(r'(?:href="#|url\(#)([^")]+)', page)):
        assert ref in ids


def test_html_summary_and_failures(page):
    assert "modelport report" in page and 'class="verdict bad"' in page
    assert "<th>reference p50 ms</th>" in page
    assert "worst output <code>probs</code>" in page
    assert "latency_p50_ms = 20.1 &gt; limit 15" in page


def test_html_renders_a_report_without_histograms():
    pytest.importorskip("matplotlib")
    report = sample_reports()[1]
    for output in report["targets"][0]["numeric"]["outputs"]:
        del output["abs_diff_histogram"]  # as written by an older modelport
    del report["targets"][0]["reference_latency_ms"]
    page = report_formats.html([report])
    assert "No histogram in this report" in page and page.count("<svg") == 1
