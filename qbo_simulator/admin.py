"""The /_sim/ control routes: inspection, faults, reset, entity switches, companies, stats."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Protocol

from qbo_simulator.company import Company
from qbo_simulator.envelopes import Response, json_response


class SimulatorControls(Protocol):
    """What the control routes drive (server.QboSimulator), so admin.py needs no server."""

    def invoices(self, realm: str | None = None) -> list[dict[str, Any]]: ...
    def payments(self, realm: str | None = None) -> list[dict[str, Any]]: ...
    def credit_memos(self, realm: str | None = None) -> list[dict[str, Any]]: ...
    def refunds(self, realm: str | None = None) -> list[dict[str, Any]]: ...
    def customers(self, realm: str | None = None) -> list[dict[str, Any]]: ...
    def company(self, realm: str | None = None) -> Company: ...
    def realms(self) -> list[str]: ...
    def add_company(self, realm: str | None = None, name: str | None = None) -> str: ...
    def add_customer(
        self,
        display_name: str,
        email: str | None = None,
        *,
        active: bool = True,
        realm: str | None = None,
    ) -> str: ...
    def faults(self) -> dict[str, Any]: ...
    def set_faults(self, **changes: Any) -> dict[str, Any]: ...
    def reset(self, *, clear_tokens: bool = False) -> None: ...
    def stats_snapshot(self) -> dict[str, Any]: ...
    def delete_entity(self, entity: str, entity_id: str, realm: str | None = None) -> None: ...
    def set_active(
        self, entity: str, entity_id: str, active: bool, realm: str | None = None
    ) -> bool: ...


class AdminRoutes:
    """Answers /_sim/... for scripts and tests."""

    def __init__(self, sim: SimulatorControls) -> None:
        self._sim = sim

    def handle(self, method: str, rest: list[str], params: dict[str, str], body: bytes) -> Response:
        """Route one control request."""
        sim = self._sim
        try:
            data: Any = json.loads(body) if body.strip() else {}
        except ValueError:
            return json_response(400, {"error": "body is not JSON"})
        if not isinstance(data, dict):
            return json_response(400, {"error": "body must be a JSON object"})
        route = (method, "/".join(rest))
        realm = params.get("realm") or None
        try:
            if route == ("GET", "invoices"):
                return json_response(200, sim.invoices(realm))
            if route == ("GET", "payments"):
                return json_response(200, sim.payments(realm))
            if route == ("GET", "creditmemos"):
                return json_response(200, sim.credit_memos(realm))
            if route == ("GET", "refunds"):
                return json_response(200, sim.refunds(realm))
            if route == ("POST", "invoices/edit"):  # a person edits an invoice in QuickBooks
                company = sim.company(data.get("realm"))
                found = company.hand_edit_invoice(str(data["id"]), Decimal(str(data["total"])))
                return json_response(200 if found else 404, {"ok": found})
            if route == ("GET", "customers"):
                return json_response(200, sim.customers(realm))
            if route == ("POST", "customers"):
                new_id = sim.add_customer(
                    str(data["display_name"]),
                    str(data["email"]) if data.get("email") else None,
                    active=bool(data.get("active", True)),
                    realm=realm,
                )
                return json_response(200, {"id": new_id})
            if route == ("GET", "faults"):
                return json_response(200, sim.faults())
            if route == ("POST", "faults"):
                return json_response(200, sim.set_faults(**data))
            if route == ("POST", "reset"):
                sim.reset(clear_tokens=bool(data.get("tokens", False)))
                return json_response(200, {"ok": True})
            if route == ("GET", "stats"):
                return json_response(200, sim.stats_snapshot())
            if route == ("GET", "companies"):
                return json_response(
                    200, [{"realm": r, "name": sim.company(r).name} for r in sim.realms()]
                )
            if route == ("POST", "companies"):
                new = sim.add_company(data.get("realm"), data.get("name"))
                return json_response(200, {"realm": new, "name": sim.company(new).name})
            if route == ("POST", "entity"):
                return self._entity(data)
        except (ValueError, TypeError, KeyError) as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(404, {"error": f"unknown control route {method} /_sim/{route[1]}"})

    def _entity(self, data: dict[str, Any]) -> Response:
        sim = self._sim
        entity, entity_id = str(data["entity"]), str(data["id"])
        realm = data.get("realm")
        if data.get("deleted"):
            sim.delete_entity(entity, entity_id, realm)
            return json_response(200, {"ok": True})
        found = sim.set_active(entity, entity_id, bool(data.get("active", False)), realm)
        return json_response(200 if found else 404, {"ok": found})
