"""Helpers of the browser tests: logging in through the form, the accessibility check, screenshots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE = Path(__file__).resolve().parent.parent / "browser" / "vendor" / "axe.min.js"
BLOCKING_IMPACTS = ("serious", "critical")


def log_in(page: Any, base: str, token: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#token", token)
    page.click("form.login button[type=submit]")
    page.wait_for_url(f"{base}/dashboard*")


def accessibility_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core (vendored from npm) injected into the page: its serious and critical violations."""
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate("""async () => {
        const result = await axe.run(document, {resultTypes: ["violations"]});
        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                            nodes: v.nodes.map(n => n.target.join(" "))}));
    }""")
    return [v for v in violations if v["impact"] in BLOCKING_IMPACTS]


def fits_width(page: Any) -> bool:
    """Nothing wider than the viewport (wide tables scroll inside their own box)."""
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1"))


def check_page(page: Any, shots: Path, name: str) -> None:
    """The checks every page gets: no serious/critical axe violation, fits the viewport; and a screenshot."""
    width = page.viewport_size["width"]
    page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
    violations = accessibility_violations(page)
    assert violations == [], f"{name} at {width}px: {violations}"
    assert fits_width(page), f"{name} is wider than {width}px"
