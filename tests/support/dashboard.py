"""What the status page (/dashboard) shows, read from its DOM in headless Chromium (test process)."""

from __future__ import annotations

import json
from typing import Any

from tests.support.chromium import Page

WIDTH, HEIGHT = 1280, 900  # the viewport and so the screenshot, in CSS pixels at scale 1

# Everything the page shows as text, once the named plots hold enough points; null until then.
FIGURES = """(() => {
  const plots = Object.fromEntries([...document.querySelectorAll("canvas")].map(
    (c) => [c.id.replace("plot-", ""), Number(c.dataset.points || 0)]));
  if (!REQUIRED.every((name) => plots[name] >= POINTS)) return null;
  const text = (id) => document.getElementById(id).textContent;
  const rows = (id) => [...document.getElementById(id).tBodies[0].rows].map(
    (row) => [...row.cells].map((cell) => cell.textContent));
  const figures = {
    plots,
    legends: Object.fromEntries([...document.querySelectorAll("canvas")].map((c) => [
      c.id.replace("plot-", ""), [...c.nextElementSibling.children].map((li) => li.textContent)])),
    tiles: Object.fromEntries([...document.querySelectorAll(".tile b")].map((b) => [b.id, b.textContent])),
    tables: Object.fromEntries(["agents", "workers", "jobs", "streams", "data"].map((id) => [id, rows(id)])),
    header: Object.fromEntries(
      ["phase", "live", "ready", "reasons", "fetch-error"].map((id) => [id, text(id)])),
    title: document.title,
    scripts: document.scripts.length,
    tags: [...new Set([...document.querySelectorAll("*")].map((node) => node.localName))].sort(),
  };
  return UNTIL ? figures : null;
})()"""


async def shown_figures(page: Page, plots: list[str], points: int, until: str = "true") -> dict[str, Any]:
    """The page's figures once each plot in `plots` has drawn at least `points` points and the JS
    expression `until` holds of them (as `figures`)."""
    condition = FIGURES.replace("REQUIRED", json.dumps(plots)).replace("POINTS", str(points))
    condition = condition.replace("UNTIL", f"({until})")
    figures: dict[str, Any] = await page.wait_until(condition)
    return figures


def column(figures: dict[str, Any], table: str, heading: int) -> list[str]:
    """The cells of one column (by position) of one of the page's tables."""
    return [row[heading] for row in figures["tables"][table]]
