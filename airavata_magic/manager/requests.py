"""Request policy: from what the user typed (a preset, ``--resource``, ``--use``, flags) to the
candidate runtimes, and the choice among several candidates (the one expected to start first).

Pure policy: nothing here submits anything or writes a record.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from .. import profile as profiles
from ..errors import AiravataError, InvalidArgument, RuntimeUnavailable
from ..runtime import Runtime, RuntimeSpec

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..profile import Profile, Resource


@dataclass
class Plan:
    """What to submit: the profile, the spec, the preset name, and the candidates in order."""

    profile: "Profile"
    spec: RuntimeSpec
    preset: str | None
    candidates: list[str]  # RESOURCE or RESOURCE:PARTITION


def plan_request(name: str, *, file: str | None, resource: str | None, use: str | None,
                 overrides: dict[str, Any] | None, preset: str | None) -> Plan:
    """NAME's settings come from the preset of that name (or ``preset`` when given), then from
    ``resource``/``use`` and ``overrides``. Raises ``InvalidArgument`` saying what to give."""
    if resource and use:
        raise InvalidArgument("give either --resource or --use, not both")
    prof = profiles.load_profile(file)
    if preset is not None and preset not in prof.presets:
        raise InvalidArgument(f"no preset {preset!r} in {prof.path or 'the profile (no file found)'}")
    chosen = prof.presets.get(preset or name)
    spec = chosen.spec if chosen else RuntimeSpec()
    spec = spec.merged(RuntimeSpec.from_values({k: v for k, v in (overrides or {}).items() if v is not None}))
    if resource:
        prof.resource(resource)
        candidates = [resource]
    elif use:
        candidates = profiles.parse_use(use, prof)
    elif chosen:
        candidates = chosen.use or [chosen.resource]  # type: ignore[list-item]
    else:
        presets = ", ".join(sorted(prof.presets)) or "none"
        raise InvalidArgument(
            f"{name!r} is not a preset in {prof.path or 'the profile (no file found)'} (presets: {presets}); "
            f"give --resource R (resources: {', '.join(sorted(prof.resources))}) or --use R[:PARTITION],..."
        )
    return Plan(prof, spec, chosen.name if chosen else None, candidates)


def candidate_runtime(name: str, plan: Plan, candidate: str) -> tuple[Runtime, "Resource"]:
    """The record a candidate would get (not saved), and its resource."""
    res_name, _, partition = candidate.partition(":")
    res = plan.profile.resource(res_name)
    spec = plan.spec.merged(RuntimeSpec(partition=partition or None)) if partition else plan.spec
    rt = Runtime(name=name, resource=res.name, kind=res.kind, spec=spec, profile=plan.profile.path,
                 preset=plan.preset)
    return rt, res


def choose(candidates: list[str], make: Callable[[str], tuple[Runtime, "Backend"]]) -> tuple[Runtime, "Backend", str]:
    """``--use``: ask each candidate when it would start; take the earliest (ties: first).
    Returns the chosen record, its backend, and a note listing every estimate."""
    estimates: list[tuple[float, int, str, Runtime, "Backend"]] = []
    notes: list[str] = []
    for i, cand in enumerate(candidates):
        rt, backend = make(cand)
        try:
            est = backend.estimate_start(rt)
        except AiravataError as e:
            notes.append(f"{cand}: cannot start ({e})")
            continue
        why = backend.estimate_reason(rt) if est is not None else ""
        notes.append((f"{cand}: starts in ~{est:.0f} s" if est is not None else f"{cand}: start time unknown")
                     + (f" [{why}]" if why else ""))
        estimates.append((est if est is not None else float("inf"), i, cand, rt, backend))
    if not estimates:
        raise RuntimeUnavailable("no resource in --use can run this runtime: " + "; ".join(notes))
    estimates.sort(key=lambda e: (e[0], e[1]))
    _, _, cand, rt, backend = estimates[0]
    return rt, backend, f"chose {cand}, expected to start first ({'; '.join(notes)})"
