"""The policy engine as an activity, so every decision is recorded in workflow history.

The policy directory (``policies/``) is read at decision time: editing a ``.cedar`` file,
``modes.yaml`` or ``approvers.yaml`` takes effect on the next decision, with no deploy and no
restart. Files are re-read on every call (a few KB) and re-parsed only when their content
changed. A directory that cannot be read or parsed yields ``deny`` / ``engine_error``, never an
exception: a broken policy set must stop writes, not crash the workflow.

What the directory holds:

- ``*.cedar`` — the policies, every one with a unique ``@id``;
- exactly one ``*.cedarschema`` — the schema they are validated against;
- ``modes.yaml`` — ``{default: <mode>, use_cases: {<use case>: observe|assist|auto}}``;
- ``approvers.yaml`` — ``{default: [roles], actions: {<action>: [roles]}, roles: {<role>: [emails]}}``.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import yaml
from temporalio import activity

import revbridge_data
from domain.policy import (
    ApproverCheck,
    CheckApproverInput,
    EligibleApprovers,
    EligibleApproversInput,
    PolicyDecision,
    PolicyRequest,
    PolicySet,
    engine_error_decision,
)

#: the policies shipped in the package — in a checkout, its top-level policies/ (the worker points
#: elsewhere with REVBRIDGE_POLICY_DIR, e.g. the copy `revbridge init` wrote)
DEFAULT_POLICY_DIR = revbridge_data.default_policy_dir()

MODES_FILE = "modes.yaml"
APPROVERS_FILE = "approvers.yaml"


class PolicyFilesError(ValueError):
    pass


def read_policy_files(directory: Path) -> dict[str, str]:
    """The policy files by name (only the kinds the engine uses; READMEs etc. are ignored)."""
    files: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and (
            path.suffix in {".cedar", ".cedarschema"} or path.name in {MODES_FILE, APPROVERS_FILE}
        ):
            files[path.name] = path.read_text(encoding="utf-8")
    return files


def _yaml_mapping(files: dict[str, str], name: str) -> dict[str, Any]:
    if name not in files:
        raise PolicyFilesError(f"{name} is missing")
    try:
        data = yaml.safe_load(files[name])
    except yaml.YAMLError as exc:
        raise PolicyFilesError(f"{name}: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PolicyFilesError(f"{name}: expected a mapping at the top level")
    return data


def build_policy_set(files: dict[str, str]) -> PolicySet:
    """A :class:`PolicySet` from file contents; problems become a set that denies everything."""
    try:
        cedar = {name: text for name, text in files.items() if name.endswith(".cedar")}
        schemas = [text for name, text in files.items() if name.endswith(".cedarschema")]
        if not cedar:
            raise PolicyFilesError("no .cedar policy files")
        if len(schemas) != 1:
            raise PolicyFilesError(f"expected exactly one .cedarschema file, found {len(schemas)}")
        return PolicySet(
            cedar,
            schema=schemas[0],
            modes=_yaml_mapping(files, MODES_FILE),
            approvers=_yaml_mapping(files, APPROVERS_FILE),
        )
    except PolicyFilesError as exc:
        return PolicySet.broken(f"policy files: {exc}")


def load_policy_set(directory: Path) -> PolicySet:
    """Read and build the policy set in ``directory`` (for the CLI and tests)."""
    try:
        files = read_policy_files(directory)
    except (OSError, UnicodeDecodeError) as exc:
        return PolicySet.broken(f"cannot read policies from {directory}: {exc}")
    return build_policy_set(files)


class PolicyActivities:
    def __init__(self, policy_dir: Path = DEFAULT_POLICY_DIR, crm: str | None = None) -> None:
        self.policy_dir = Path(policy_dir)
        #: the deployment's CRM: approvers' CRM users are looked up for it (approvers.yaml)
        self.crm = crm
        self._lock = threading.Lock()
        self._cached: tuple[str, PolicySet] | None = None

    def policy_set(self) -> PolicySet:
        """The current policy set: files re-read each call, re-parsed only when they changed."""
        try:
            files = read_policy_files(self.policy_dir)
        except (OSError, UnicodeDecodeError) as exc:
            return PolicySet.broken(f"cannot read policies from {self.policy_dir}: {exc}")
        digest = hashlib.sha256()
        for name, text in files.items():
            digest.update(f"{len(name)}:{name}{len(text)}:".encode())
            digest.update(text.encode())
        key = digest.hexdigest()
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
        policy_set = build_policy_set(files)
        with self._lock:
            self._cached = (key, policy_set)
        return policy_set

    @activity.defn(name="decide_policy")
    def decide_policy(self, req: PolicyRequest) -> PolicyDecision:
        try:
            decision = self.policy_set().decide(req)
        except Exception as exc:  # never raise: an unexpected failure is a deny, recorded
            decision = engine_error_decision(f"{type(exc).__name__}: {exc}", mode=None)
        activity.logger.info(
            "policy %s %s → %s (%s)",
            req.use_case,
            req.action,
            decision.outcome,
            ", ".join(decision.policy_ids),
        )
        return decision

    @activity.defn(name="check_approver")
    def check_approver(self, input: CheckApproverInput) -> ApproverCheck:
        """May this person approve this kind of action? (The approval gate asks before it
        accepts a signal; ``decide_policy`` with ``approved_by`` checks again.)"""
        try:
            return self.policy_set().check_approver(input.email, input.action)
        except Exception as exc:
            return ApproverCheck(
                email=input.email,
                action=input.action,
                allowed=False,
                reason=f"policy engine error: {type(exc).__name__}: {exc}",
            )

    @activity.defn(name="eligible_approvers")
    def eligible_approvers(self, input: EligibleApproversInput) -> EligibleApprovers:
        """Who may approve this action right now: the gate snapshots it, so its signal handler
        and update validator can refuse anyone else deterministically."""
        try:
            policy_set = self.policy_set()
            emails = policy_set.eligible_approvers(input.action, input.roles)
            return EligibleApprovers(
                emails=emails, crm_user_ids=policy_set.crm_user_ids(emails, self.crm)
            )
        except Exception:  # a broken policy set approves no one
            return EligibleApprovers(emails=[])
