"""The reconciliation report opened in headless Chromium (the one scripts/bootstrap-browser sets
up for CI): the chart draws its bars and the table its rows, from a file with no script and
nothing fetched from elsewhere; a screenshot shows red bars where the chart is."""

from __future__ import annotations

import base64
from datetime import date, timedelta
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from activities.reconcile import ReportInput, render_csv, render_html
from domain import reconcile as rx
from tests.e2e.test_web_ui_approval import CHROMIUM, CHROMIUM_ARGS

TODAY = date(2026, 12, 8)


def report() -> ReportInput:
    kinds = list(rx.Kind)
    open_ = [
        rx.ExceptionRecord(
            id=f"rx-{i:016x}",
            kind=kinds[i % len(kinds)],
            severity=rx.Severity.HIGH if i % 3 else rx.Severity.MEDIUM,
            status=rx.ExceptionStatus.WAITING,
            account_id=f"001{i:015d}",
            customer_id=f"cus_{i}",
            records=[f"billing:invoice:in_{i}", f"crm:account:001{i:015d}"],
            evidence={"total": "70000", "applied": str(1000 * i)},
            fix="find the payment or reopen the invoice",
            approver_role="finance",
            first_seen=TODAY - timedelta(days=i * 2),
            last_seen=TODAY,
        )
        for i in range(12)
    ]
    closed = [
        rx.StoredException(
            id=f"rx-old{i}",
            status=rx.ExceptionStatus.CLOSED,
            first_seen=TODAY - timedelta(days=25),
            resolved_on=TODAY - timedelta(days=10 - i),
        )
        for i in range(5)
    ]
    return ReportInput(
        run_id="reconcile-2026-12-08T05:00:00Z",
        today=TODAY,
        billing="chargebee",
        crm="salesforce",
        open=open_,
        stored=closed,
        counts={"customers": 40, "invoices": 80},
        urls={"invoice": "https://acme.chargebee.com/d/invoices/{id}", "account": "https://x/{id}"},
    )


async def browser_path() -> Path:
    if CHROMIUM.exists():
        return CHROMIUM
    async with async_playwright() as pw:
        own = Path(pw.chromium.executable_path)
    if not own.exists():
        pytest.fail("no browser: run scripts/bootstrap-browser (make test does)", pytrace=False)
    return own


async def test_the_report_renders_its_chart_and_table(tmp_path: Path) -> None:
    data = report()
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(data, csv_name="report.csv"), encoding="utf-8")
    (tmp_path / "report.csv").write_text(render_csv(data.open), encoding="utf-8")
    html = page_file.read_text(encoding="utf-8")
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")
    chromium = await browser_path()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(page_file.as_uri())
            chart = page.locator("svg#chart")
            box = await chart.bounding_box()
            assert box and box["width"] > 600 and box["height"] > 200
            bars = page.locator("svg#chart rect.bar")
            assert await bars.count() == 30
            # the bars that carry a count are drawn with a height
            tall = [await bars.nth(i).bounding_box() for i in range(30)]
            assert sum(1 for b in tall if b and b["height"] > 1) >= 20
            rows = page.locator("table#exceptions tr")
            assert await rows.count() == 1 + len(data.open)
            assert await page.locator("table#exceptions").is_visible()
            assert await page.locator("#open-count").inner_text() == "12 open"
            shot = await chart.screenshot()
            assert requests == [page_file.as_uri()]  # nothing fetched from anywhere else
            (tmp_path / "chart.png").write_bytes(shot)
            # the screenshot's pixels, counted by the browser itself (no imaging library)
            reds = await page.evaluate(RED_PIXELS, base64.b64encode(shot).decode())
            assert reds > 500, reds
        finally:
            await browser.close()


RED_PIXELS = """async (b64) => {
  const img = new Image();
  img.src = "data:image/png;base64," + b64;
  await img.decode();
  const c = document.createElement("canvas");
  c.width = img.width; c.height = img.height;
  const ctx = c.getContext("2d");
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] > 150 && d[i + 1] < 90 && d[i + 2] < 90) n++;
  return n;
}"""
