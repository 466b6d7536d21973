"""OpenCompass model classes the operator's rendered configs may name (eval image only).

``OpenAISDKEstimatedTokens``: an OpenAI-compatible endpoint evaluated without a tokenizer.
OpenCompass' ``OpenAISDK`` counts prompt tokens with a tokenizer (to trim prompts to
``max_seq_len``); with none it falls back to tiktoken's gpt-4 encoding, which is downloaded on
first use and so fails offline. This class estimates instead: UTF-8 bytes / 3, rounded up
(about one token per CJK character, an over-estimate for English, so trimming errs early).
"""

from __future__ import annotations

from opencompass.models import OpenAISDK


class OpenAISDKEstimatedTokens(OpenAISDK):  # type: ignore[misc]
    def _init_tokenizer(self) -> None:
        self.tokenizer = None
        self.tokenizer_type = "estimate"

    def get_token_len(self, prompt: str) -> int:
        return max(1, -(-len(prompt.encode("utf-8")) // 3))
