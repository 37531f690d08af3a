"""The demo's deployment, through the same admin path as `lfr deployment`: one person creates
it, a superintendent authorises it (its snapshot of the enrolled watchlist frozen), it starts,
and it ends when the run is over. Tests use it to run the pipeline the lawful way.
"""

from __future__ import annotations

import os

from dataclasses import dataclass, field

from services.governance.audit.identity import identity_from_env, second_key
from services.common.settings import DeploymentSettings, load_settings
from services.common.signing import Signer
from services.governance.deployments.admin import DeploymentAdmin
from services.governance.deployments.record import Criteria, Deployment, Transition, Window
from services.governance.deployments.store import DeploymentStore
from services.governance.watchlist.entry import CATEGORIES, PRIORITIES

CREATOR = "PS 4471 demo planner"
AUTHORISER = "Supt 1066 demo"
# Faces searched per hour past the demo camera: 713 accepted faces in a 60 s default run
# (README, "The demo"), rounded up.
DEMO_FOOTFALL_PER_HOUR = 43_000.0


@dataclass
class DemoDeployment:
    admin: DeploymentAdmin
    deployment_id: str
    expected_false_alerts_per_hour: float = 0.0
    states: list[str] = field(default_factory=list)
    record: Deployment | None = None

    def end(self) -> None:
        if self.record is not None and self.record.state == "active":
            self.record = self.admin.end(self.deployment_id, CREATOR)
            self.states = self.record.states_seen

    def summary(self) -> dict:
        return {"id": self.deployment_id, "states": self.states}


def open_deployment(
    bootstrap: str,
    deployment_id: str,
    cameras: list[str],
    *,
    hours: float = 2.0,
    threshold: float | None = None,
    footfall_per_hour: float = DEMO_FOOTFALL_PER_HOUR,
    signing_env: dict[str, str] | None = None,
    authoriser: Signer | None = None,
    **settings_overrides: object,
) -> DemoDeployment:
    """Create, authorise (two different people) and start ``deployment_id`` for ``cameras``."""
    if authoriser is None:  # the authorising officer signs with a key other than the creator's
        identity = signing_env or identity_from_env(os.environ)
        authoriser = second_key(identity, "demo:authoriser") if identity else None
    signing = {name.removeprefix("LFR_").lower(): value for name, value in (signing_env or {}).items()}
    settings = load_settings(DeploymentSettings, kafka_bootstrap_servers=bootstrap, **signing, **settings_overrides)
    admin = DeploymentAdmin(DeploymentStore(settings))
    now = admin.clock()
    floor = admin.calibration.floor()
    draft = Deployment(
        deployment_id=deployment_id, revision=0, state="draft", created_by=CREATOR, created_at_ms=now,
        history=(Transition("draft", CREATOR, now),), force="Demo Constabulary", name="OpenLFR demo",
        purpose={"offences": ["demonstration"], "categories": ["suspect", "wanted_by_courts"]},
        place={"name": "synthetic street", "point": {"lat": 51.4816, "lon": -3.1791}, "radius_m": 50.0},
        window=Window(now - 60_000, now + int(hours * 3_600_000)), cameras=tuple(cameras),
        criteria=Criteria(CATEGORIES, PRIORITIES, 1000), match_threshold=max(threshold or floor, floor),
        footfall_per_hour=footfall_per_hour, rationale="demonstration on synthetic crowd", dpia_ref="DPIA-DEMO-1",
        eia_ref="EIA-DEMO-1", public_notice={"signage": True, "notice_ref": "demo notice"},
    )
    demo = DemoDeployment(admin, deployment_id)
    admin.create(draft)
    authorised = admin.authorise(deployment_id, AUTHORISER, "superintendent", signer=authoriser)
    demo.expected_false_alerts_per_hour = authorised.expected_false_alerts_per_hour
    demo.record = admin.start(deployment_id, CREATOR)
    demo.states = demo.record.states_seen
    return demo

