"""The tools of the agent image (images/agent: Lagent 0.2.4, AgentLego 0.2.0 without its model
extras), so that the operator rejects a spec.tools name or param the image cannot run before a
pod crash-loops on it. tests/workloads/test_agent_tools.py checks this table against the real
libraries in the image's environment.

Name resolution (the same rule as the workload's stages/agent_tools.py; docs/agent-api.md):
``lagent.<Action>`` and ``agentlego.<Tool>`` name the library; a bare name is Lagent's action
when Lagent has one (``GoogleSearch`` is in both), else AgentLego's tool.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import InvalidSpec

LIBRARIES = ("lagent", "agentlego")

LAGENT_ACTIONS: dict[str, tuple[str, ...]] = {
    "ArxivSearch": ("top_k_results", "max_query_len", "doc_content_chars_max", "enable"),
    "BINGMap": ("key", "enable"),
    "BingBrowser": ("searcher_type", "timeout", "black_list", "topk", "enable"),
    "GoogleScholar": ("api_key", "enable"),
    "GoogleSearch": ("api_key", "timeout", "search_type", "enable"),
    "IPythonInteractive": ("timeout", "max_out_len", "use_signals", "enable"),
    "IPythonInteractiveManager": ("max_workers", "timeout", "ci_lock", "enable"),
    "IPythonInterpreter": ("timeout", "user_data_dir", "work_dir", "enable"),
    "PPT": ("theme_mapping", "enable"),
    "PythonInterpreter": (
        "answer_symbol",
        "answer_expr",
        "answer_from_stdout",
        "timeout",
        "enable",
    ),
}
"""Lagent 0.2.4's actions and their constructor params (``description``/``parser`` left out:
they are Python objects, not spec values)."""

AGENTLEGO_TOOLS: dict[str, tuple[str, ...]] = {
    "Calculator": ("timeout",),
    "GoogleSearch": ("api_key", "timeout", "search_type", "max_out_len", "with_url", "k"),
    "Translation": ("backend",),
}
"""AgentLego 0.2.0's tools that run in the agent image (CPU, no model extras)."""

AGENTLEGO_NEEDS_EXTRAS: dict[str, str] = {
    "AudioImageToImage": "diffusers, ftfy, iopath, timm, pytorchvideo",
    "AudioTextToImage": "diffusers, ftfy, iopath, timm, pytorchvideo",
    "AudioToImage": "diffusers, ftfy, iopath, timm, pytorchvideo",
    "CannyTextToImage": "diffusers",
    "DepthTextToImage": "diffusers",
    "HumanBodyPose": "mmpose",
    "HumanFaceLandmark": "mmpose",
    "ImageDescription": "mmpretrain",
    "ImageExpansion": "mmpretrain",
    "ImageStylization": "diffusers",
    "ImageToCanny": "opencv-python",
    "ImageToDepth": "transformers",
    "ImageToScribble": "controlnet_aux",
    "OCR": "easyocr",
    "ObjectDetection": "mmdet",
    "ObjectRemove": "mmdet",
    "ObjectReplace": "mmdet",
    "PoseToImage": "diffusers",
    "ScribbleTextToImage": "diffusers",
    "SegmentAnything": "segment_anything",
    "SegmentObject": "segment_anything",
    "SemanticSegmentation": "mmsegmentation",
    "SpeechToText": "torch, transformers, torchaudio",
    "TextToBbox": "mmdet",
    "TextToImage": "diffusers",
    "TextToSpeech": "TTS",
    "ThermalToImage": "diffusers, ftfy, iopath, timm",
    "VQA": "mmpretrain",
}
"""AgentLego 0.2.0's model tools and what they need beyond the image (torch, OpenMMLab, ...)."""

_REGISTRY = {"lagent": LAGENT_ACTIONS, "agentlego": AGENTLEGO_TOOLS}


@dataclass(frozen=True)
class ResolvedTool:
    name: str  # as written in spec.tools
    library: str
    cls: str


def available() -> str:
    return (
        f"Lagent actions: {', '.join(sorted(LAGENT_ACTIONS))}; "
        f"AgentLego tools: {', '.join(sorted(AGENTLEGO_TOOLS))}"
    )


def split_name(name: str) -> tuple[str | None, str]:
    head, dot, tail = name.partition(".")
    if dot and head in LIBRARIES:
        return head, tail
    return None, name


def resolve(name: str, params: dict[str, object] | None) -> ResolvedTool:
    """Resolve one spec.tools entry against the agent image, or InvalidSpec saying why."""
    prefix, cls = split_name(name)
    library = prefix or (
        "lagent" if cls in LAGENT_ACTIONS else "agentlego" if cls in AGENTLEGO_TOOLS else None
    )
    if library is None or cls not in _REGISTRY[library]:
        if library != "lagent" and cls in AGENTLEGO_NEEDS_EXTRAS:
            raise InvalidSpec(
                f"spec.tools: AgentLego's {cls} needs {AGENTLEGO_NEEDS_EXTRAS[cls]}, which the "
                "agent image does not install; set spec.image to an image that has them"
            )
        where = f"{library} has no tool {cls!r}" if library else f"unknown tool {name!r}"
        raise InvalidSpec(f"spec.tools: {where} (available: {available()})")
    accepted = _REGISTRY[library][cls]
    bad = sorted(set(params or {}) - set(accepted))
    if bad:
        raise InvalidSpec(
            f"spec.tools {name}: unknown params {bad} (accepted: {', '.join(accepted) or 'none'})"
        )
    return ResolvedTool(name, library, cls)


def resolve_all(tools: list[tuple[str, dict[str, object] | None]]) -> list[ResolvedTool]:
    out: list[ResolvedTool] = []
    seen: dict[str, str] = {}
    for name, params in tools:
        r = resolve(name, params)
        # Lagent's executor keys tools by class name: a second would replace the first.
        if r.cls in seen:
            raise InvalidSpec(
                f"spec.tools: {seen[r.cls]!r} and {name!r} are both the tool {r.cls!r}; keep one"
            )
        seen[r.cls] = name
        out.append(r)
    return out
