"""Built-in chat templates: more families, names h to l.

Facts (slot strings, stop words, default system prompts, flags) from LLaMA-Factory 0.9.5, written in our
declaration format (registry.register_template; unlisted arguments take its defaults). Token parity with
LLaMA-Factory is tested for every template here (tests/data/test_templates_lf.py).

Templates with `media` are multimodal in LLaMA-Factory (the facts name the plugin and placeholder tokens);
here they encode text only.
"""

from .registry import register_template
from .slots import BOS, EOS


register_template(
    "hy3",
    user="<｜hy_User｜>{{content}}<｜hy_Assistant｜>",
    assistant="{{content}}<｜hy_eos｜>",
    prefix=[BOS],
    stop_words=["<｜hy_eos｜>"],
    thought_words=("<think>", "</think>"),
    replace_eos=True,
    reasoning=True,
)


register_template(
    "index",
    user="reserved_0{{content}}reserved_1",
    system="<unk>{{content}}",
    efficient_eos=True,
)


register_template(
    "hunyuan",
    user="{{content}}<|extra_0|>",
    assistant="{{content}}<|eos|>",
    system="{{content}}<|extra_4|>",
    prefix="<|startoftext|>",
    stop_words=["<|eos|>"],
)


register_template(
    "hunyuan_small",
    user="<｜hy_User｜>{{content}}<｜hy_place▁holder▁no▁8｜>",
    assistant="{{content}}<｜hy_place▁holder▁no▁2｜>",
    system="{{content}}<｜hy_place▁holder▁no▁3｜>",
    prefix="<｜hy_begin▁of▁sentence｜>",
    stop_words=["<｜hy_place▁holder▁no▁2｜>"],
)


register_template(
    "intern2",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    prefix=[BOS],
    default_system=(
        "You are an AI assistant whose name is InternLM (书生·浦语).\n"
        "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai "
        "AI Laboratory (上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n"
        "- InternLM (书生·浦语) can understand and communicate fluently in the language chosen "
        "by the user such as English and 中文."
    ),
    stop_words=["<|im_end|>"],
)


register_template(
    "intern_vl",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    prefix=[BOS],
    default_system="你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。",
    stop_words=["<|im_end|>"],
    media={"plugin": "intern_vl", "image_token": "<image>", "video_token": "<video>"},
)


register_template(
    "intern_s1",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    prefix=[BOS],
    stop_words=["<|im_end|>"],
    media={"plugin": "intern_vl", "image_token": "<image>", "video_token": "<video>"},
)


register_template(
    "keye_vl",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation=(
        "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    tool_format="qwen",
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
    "kimi_vl",
    user="<|im_user|>user<|im_middle|>{{content}}<|im_end|><|im_assistant|>assistant<|im_middle|>",
    assistant="{{content}}<|im_end|>",
    system="<|im_system|>system<|im_middle|>{{content}}<|im_end|>",
    default_system="You are a helpful assistant",
    stop_words=["<|im_end|>"],
    thought_words=("◁think▷", "◁/think▷"),
    reasoning=True,
    media={"plugin": "kimi_vl", "image_token": "<|media_pad|>"},
)


register_template(
    "lfm2",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation=(
        "<|im_start|>tool\n<|tool_response_start|>{{content}}<|tool_response_end|><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    tool_format="lfm2",
    default_system="You are a helpful AI assistant.",
    stop_words=["<|im_end|>"],
    tool_call_words=("<|tool_call_start|>", "<|tool_call_end|>"),
    replace_eos=True,
)


register_template(
    "lfm2_vl",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation=(
        "<|im_start|>tool\n<|tool_response_start|>{{content}}<|tool_response_end|><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    tool_format="lfm2",
    default_system="You are a helpful multimodal assistant by Liquid AI.",
    stop_words=["<|im_end|>"],
    tool_call_words=("<|tool_call_start|>", "<|tool_call_end|>"),
    replace_eos=True,
    media={"plugin": "lfm2_vl", "image_token": "<image>"},
)


register_template(
    "llama2_zh",
    user=[BOS, "[INST] {{content}} [/INST]"],
    system="<<SYS>>\n{{content}}\n<</SYS>>\n\n",
    default_system="You are a helpful assistant. 你是一个乐于助人的助手。",
    system_in_first_user=True,
)


register_template(
    "llama4",
    user="<|header_start|>user<|header_end|>\n\n{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n",
    assistant="{{content}}<|eot|>",
    system="<|header_start|>system<|header_end|>\n\n{{content}}<|eot|>",
    observation=(
        "<|header_start|>ipython<|header_end|>\n\n"
        "{{content}}<|eot|><|header_start|>assistant<|header_end|>\n\n"
    ),
    prefix=[BOS],
    tool_format="llama3",
    stop_words=["<|eot|>", "<|eom|>"],
    replace_eos=True,
    media={"plugin": "llama4", "image_token": "<|image|>"},
)


register_template(
    "llava",
    user="USER: {{content}} ASSISTANT:",
    default_system=(
        "A chat between a curious user and an artificial intelligence assistant. The assistant "
        "gives helpful, detailed, and polite answers to the user's questions."
    ),
    media={"plugin": "llava", "image_token": "<image>"},
)


register_template(
    "llava_next",
    user="USER: {{content}} ASSISTANT:",
    default_system=(
        "A chat between a curious user and an artificial intelligence assistant. The assistant "
        "gives helpful, detailed, and polite answers to the user's questions."
    ),
    media={"plugin": "llava_next", "image_token": "<image>"},
)


register_template(
    "llava_next_llama3",
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
    media={"plugin": "llava_next", "image_token": "<image>"},
)


register_template(
    "llava_next_mistral",
    user="[INST] {{content}}[/INST]",
    assistant=[" {{content}}", EOS],
    system="{{content}}\n\n",
    function=["[TOOL_CALLS] {{content}}", EOS],
    observation="[TOOL_RESULTS] {\"content\": {{content}}}[/TOOL_RESULTS]",
    prefix=[BOS],
    tool_format="mistral",
    system_in_first_user=True,
    media={"plugin": "llava_next", "image_token": "<image>"},
)


register_template(
    "llava_next_qwen",
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
    media={"plugin": "llava_next", "image_token": "<image>"},
)


register_template(
    "llava_next_yi",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    stop_words=["<|im_end|>"],
    media={"plugin": "llava_next", "image_token": "<image>"},
)


register_template(
    "llava_next_video",
    user="USER: {{content}} ASSISTANT:",
    default_system=(
        "A chat between a curious user and an artificial intelligence assistant. The assistant "
        "gives helpful, detailed, and polite answers to the user's questions."
    ),
    media={"plugin": "llava_next_video", "image_token": "<image>", "video_token": "<video>"},
)


register_template(
    "llava_next_video_mistral",
    user="[INST] {{content}}[/INST]",
    assistant=[" {{content}}", EOS],
    system="{{content}}\n\n",
    function=["[TOOL_CALLS] {{content}}", EOS],
    observation="[TOOL_RESULTS] {\"content\": {{content}}}[/TOOL_RESULTS]",
    prefix=[BOS],
    tool_format="mistral",
    system_in_first_user=True,
    media={"plugin": "llava_next_video", "image_token": "<image>", "video_token": "<video>"},
)


register_template(
    "llava_next_video_yi",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    stop_words=["<|im_end|>"],
    media={"plugin": "llava_next_video", "image_token": "<image>", "video_token": "<video>"},
)
