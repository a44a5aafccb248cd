"""The request bodies of the OpenAI-compatible API (field names and defaults are OpenAI's / LLaMA-Factory's).

Fields OpenAI clients send that we do not act on are accepted only at their neutral value (see
`unsupported_fields`), so a request is never answered as if an option had been applied when it was not.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class URL(BaseModel):
    url: str
    detail: Literal["auto", "low", "high"] = "auto"


class InputAudio(BaseModel):
    """OpenAI's audio input part: base64 file data and its format."""

    data: str
    format: str = "wav"


class MediaURL(BaseModel):
    url: str


class ContentPart(BaseModel):
    type: Literal["text", "image_url", "video_url", "input_audio", "audio_url"]
    text: str | None = None
    image_url: URL | None = None
    video_url: MediaURL | None = None  # vLLM / LLaMA-Factory
    input_audio: InputAudio | None = None  # OpenAI
    audio_url: MediaURL | None = None  # LLaMA-Factory


class FunctionCallIn(BaseModel):
    name: str
    arguments: str  # a JSON object as text (OpenAI's layout)


class ToolCallIn(BaseModel):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallIn] | None = None
    name: str | None = None
    tool_call_id: str | None = None


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. "strict": passed on to the tool description as given
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class Tool(BaseModel):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # NaN and inf are valid JSON to Python's parser but no valid sampling argument: refused by field name.
    model_config = ConfigDict(allow_inf_nan=False)

    model: str
    messages: list[ChatMessage]
    tools: list[Tool] | None = None
    tool_choice: Any = None
    do_sample: bool | None = None  # LLaMA-Factory's extension
    temperature: float | None = None
    top_p: float | None = None
    n: int = Field(1, ge=1)
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    # Accepted at their neutral values only:
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None

    def unsupported_fields(self) -> list[str]:
        problems = []
        if self.frequency_penalty:
            problems.append("frequency_penalty is not supported; use presence_penalty")
        if self.logit_bias:
            problems.append("logit_bias is not supported")
        if self.logprobs or self.top_logprobs:
            problems.append("logprobs / top_logprobs are not supported")
        if self.seed is not None:
            problems.append("seed is not supported (sampling is not reproducible per request); leave it unset")
        if self.response_format and self.response_format.get("type") not in (None, "text"):
            problems.append(f"response_format {self.response_format.get('type')!r} is not supported; only 'text'")
        return problems


class ScoreEvaluationRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    model: str
    messages: list[str]
    max_length: int | None = Field(None, ge=1)
