"""Built-in chat templates: more families, names m to p.

Facts (slot strings, stop words, default system prompts, flags) from LLaMA-Factory 0.9.5, written in our
declaration format (registry.register_template; unlisted arguments take its defaults). Token parity with
LLaMA-Factory is tested for every template here (tests/data/test_templates_lf.py).

Templates with `media` are multimodal in LLaMA-Factory (the facts name the plugin and placeholder tokens);
here they encode text only.
"""

from .registry import register_template
from .slots import BOS, EOS


register_template(
    "mllama",
    user=(
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    assistant="{{content}}<|eot_id|>",
    system="<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>",
    observation=(
        "<|start_header_id|>ipython<|end_header_id|>\n\n"
        "{{content}}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    prefix=[BOS],
    tool_format="llama3",
    stop_words=["<|eot_id|>", "<|eom_id|>"],
    replace_eos=True,
    media={"plugin": "mllama", "image_token": "<|image|>"},
)


register_template(
    "moonlight",
    user="<|im_user|>user<|im_middle|>{{content}}<|im_end|><|im_assistant|>assistant<|im_middle|>",
    assistant="{{content}}<|im_end|>",
    system="<|im_system|>system<|im_middle|>{{content}}<|im_end|>",
    default_system="You are a helpful assistant provided by Moonshot-AI.",
    stop_words=["<|im_end|>"],
    replace_eos=True,
)


register_template(
    "mimo",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation=(
        "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    tool_format="qwen",
    default_system="You are a helpful assistant.",
    stop_words=["<|im_end|>"],
    replace_eos=True,
    reasoning=True,
)


register_template(
    "mimo_v2",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation=(
        "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    tool_format="qwen",
    default_system="You are MiMo, a helpful AI assistant engineered by Xiaomi.",
    stop_words=["<|im_end|>"],
    thought_words=("<think>", "</think>"),
    replace_eos=True,
    reasoning=True,
)


register_template(
    "mimo_vl",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation=(
        "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    tool_format="qwen",
    default_system="You are MiMo, an AI assistant developed by Xiaomi.",
    stop_words=["<|im_end|>"],
    replace_eos=True,
    reasoning=True,
    media={
        "plugin": "qwen2_vl",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
)


register_template(
    "minicpm_v",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    default_system="You are a helpful assistant.",
    stop_words=["<|im_end|>"],
    media={"plugin": "minicpm_v", "image_token": "<image>", "video_token": "<video>"},
)


register_template(
    "minicpm_v_4_6",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    default_system="You are a helpful assistant.",
    stop_words=["<|im_end|>"],
    media={"plugin": "minicpm_v_4_6", "image_token": "<image>", "video_token": "<video>"},
)


register_template(
    "minicpm_o",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    default_system="You are a helpful assistant. You can accept audio and text input and output voice and text.",
    stop_words=["<|im_end|>"],
    media={
        "plugin": "minicpm_v",
        "image_token": "<image>",
        "video_token": "<video>",
        "audio_token": "<audio>",
    },
)


register_template(
    "minimax1",
    user=(
        "<beginning_of_sentence>user name=user\n{{content}}<end_of_sentence>\n"
        "<beginning_of_sentence>ai name=assistant\n"
    ),
    assistant="{{content}}<end_of_sentence>\n",
    system="<beginning_of_sentence>system ai_setting=assistant\n{{content}}<end_of_sentence>\n",
    observation=(
        "<beginning_of_sentence>tool name=tools\n{{content}}<end_of_sentence>\n"
        "<beginning_of_sentence>ai name=assistant\n"
    ),
    tool_format="minimax1",
    default_system="You are a helpful assistant.",
    stop_words=["<end_of_sentence>"],
)


register_template(
    "minimax2",
    user="]~b]user\n{{content}}[e~[\n]~b]ai\n",
    assistant="{{content}}[e~[\n",
    system="]~!b[]~b]system\n{{content}}[e~[\n",
    observation="]~b]tool\n<response>{{content}}</response>[e~[\n]~b]ai\n",
    tool_format="minimax2",
    default_system="You are a helpful assistant. Your name is MiniMax-M2.1 and is built by MiniMax.",
    stop_words=["[e~["],
    reasoning=True,
)


register_template(
    "ministral",
    user="[INST]{{content}}[/INST]",
    system="{{content}}\n\n",
    function=["[TOOL_CALLS]{{content}}", EOS],
    observation="[TOOL_RESULTS]{\"content\": {{content}}}[/TOOL_RESULTS]",
    prefix=[BOS],
    tool_format="mistral",
    system_in_first_user=True,
)


register_template(
    "mistral_small",
    user="[INST]{{content}}[/INST]",
    system="[SYSTEM_PROMPT]{{content}}[/SYSTEM_PROMPT]",
    function=["[TOOL_CALLS]{{content}}", EOS],
    observation="[TOOL_RESULTS]{\"content\": {{content}}}[/TOOL_RESULTS]",
    prefix=[BOS],
    tool_format="mistral",
    media={"plugin": "pixtral", "image_token": "[IMG]"},
)


register_template(
    "ministral3",
    user="[INST]{{content}}[/INST]",
    system="{{content}}\n\n",
    function=["[TOOL_CALLS]{{content}}", EOS],
    observation="[TOOL_RESULTS]{\"content\": {{content}}}[/TOOL_RESULTS]",
    prefix=[BOS],
    tool_format="mistral",
    system_in_first_user=True,
    media={"plugin": "pixtral", "image_token": "[IMG]"},
)


register_template(
    "olmo",
    user="<|user|>\n{{content}}<|assistant|>\n",
    prefix=[EOS],
)


register_template(
    "openchat",
    user=["GPT4 Correct User: {{content}}", EOS, "GPT4 Correct Assistant:"],
    prefix=[BOS],
)


register_template(
    "openchat-3.6",
    user=(
        "<|start_header_id|>GPT4 Correct User<|end_header_id|>\n\n"
        "{{content}}<|eot_id|><|start_header_id|>GPT4 Correct Assistant<|end_header_id|>\n\n"
    ),
    prefix=[BOS],
    stop_words=["<|eot_id|>"],
)


register_template(
    "opencoder",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation="<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    default_system="You are OpenCoder, created by OpenCoder Team.",
    stop_words=["<|im_end|>"],
)


register_template(
    "paligemma",
    user="{{content}}\n",
    prefix=[BOS],
    system_in_first_user=True,
    media={"plugin": "paligemma", "image_token": "<image>"},
)


register_template(
    "paligemma_chat",
    user="<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    assistant="{{content}}<end_of_turn>\n",
    observation="<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    prefix=[BOS],
    stop_words=["<end_of_turn>"],
    replace_eos=True,
    system_in_first_user=True,
    media={"plugin": "paligemma", "image_token": "<image>"},
)


# LLaMA-Factory declares an <|endoftext|> prefix for phi_small in a form its encoder skips; parity leaves it out.
register_template(
    "phi_small",
    user="<|user|>\n{{content}}<|end|>\n<|assistant|>\n",
    assistant="{{content}}<|end|>\n",
    system="<|system|>\n{{content}}<|end|>\n",
    stop_words=["<|end|>"],
    replace_eos=True,
)


register_template(
    "phi4_mini",
    user="<|user|>{{content}}<|end|><|assistant|>",
    assistant="{{content}}<|end|>",
    system="<|system|>{{content}}<|end|>",
    tools_wrapper="<|tool|>{{content}}<|/tool|>",
    stop_words=["<|end|>"],
    replace_eos=True,
)


register_template(
    "pixtral",
    user="[INST]{{content}}[/INST]",
    system="{{content}}\n\n",
    function=["[TOOL_CALLS]{{content}}", EOS],
    observation="[TOOL_RESULTS]{\"content\": {{content}}}[/TOOL_RESULTS]",
    prefix=[BOS],
    tool_format="mistral",
    system_in_first_user=True,
    media={"plugin": "pixtral", "image_token": "[IMG]"},
)
