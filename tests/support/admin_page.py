"""The admin rollout page driven in a browser."""

from __future__ import annotations

from playwright.sync_api import Page


def open_admin_page(page: Page, base_url: str, token: str) -> None:
    """Open /admin/rollout and use an admin's token, as an operator pastes it in."""
    page.goto(base_url + "/admin/rollout")
    page.get_by_label("Bearer token with the admin role").fill(token)
    page.get_by_role("button", name="Use token").click()
