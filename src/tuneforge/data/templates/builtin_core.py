"""Built-in chat templates: the families people fine-tune most.

Facts (slot strings, stop words, default system prompts, flags) from LLaMA-Factory 0.9.5, written in our
declaration format (registry.register_template; unlisted arguments take its defaults). Token parity with
LLaMA-Factory is tested for every template here (tests/data/test_templates_lf.py).
"""

from .registry import register_template
from .slots import BOS, EOS


register_template(
    "default",
    user=["Human: {{content}}", EOS, "\nAssistant:"],
    assistant=["{{content}}", EOS, "\n"],
    system=["System: {{content}}", EOS, "\n"],
    replace_jinja_template=True,
)


register_template(
    "empty",
    assistant="{{content}}",
)


register_template(
    "alpaca",
    user="### Instruction:\n{{content}}\n\n### Response:\n",
    assistant=["{{content}}", EOS, "\n\n"],
    default_system=(
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n"
    ),
    replace_jinja_template=True,
)


register_template(
    "vicuna",
    user="USER: {{content}} ASSISTANT:",
    default_system=(
        "A chat between a curious user and an artificial intelligence assistant. The assistant "
        "gives helpful, detailed, and polite answers to the user's questions."
    ),
    replace_jinja_template=True,
)


register_template(
    "chatml",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation="<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    stop_words=["<|im_end|>", "<|im_start|>"],
    replace_eos=True,
    replace_jinja_template=True,
)


register_template(
    "qwen",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation=(
        "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    tool_format="qwen",
    default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    stop_words=["<|im_end|>"],
    replace_eos=True,
)


register_template(
    "qwen3",
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
)


register_template(
    "qwen3_nothink",
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
)


register_template(
    "llama2",
    user=[BOS, "[INST] {{content}} [/INST]"],
    system="<<SYS>>\n{{content}}\n<</SYS>>\n\n",
    system_in_first_user=True,
)


register_template(
    "llama3",
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
)


register_template(
    "mistral",
    user="[INST] {{content}}[/INST]",
    assistant=[" {{content}}", EOS],
    system="{{content}}\n\n",
    function=["[TOOL_CALLS] {{content}}", EOS],
    observation="[TOOL_RESULTS] {\"content\": {{content}}}[/TOOL_RESULTS]",
    prefix=[BOS],
    tool_format="mistral",
    system_in_first_user=True,
)


register_template(
    "gemma",
    user="<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    assistant="{{content}}<end_of_turn>\n",
    system="{{content}}\n\n",
    observation="<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    prefix=[BOS],
    stop_words=["<end_of_turn>"],
    replace_eos=True,
    system_in_first_user=True,
)


register_template(
    "gemma3",
    user="<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    assistant="{{content}}<end_of_turn>\n",
    system="{{content}}\n\n",
    observation="<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    prefix=[BOS],
    stop_words=["<end_of_turn>"],
    replace_eos=True,
    system_in_first_user=True,
    media={"plugin": "gemma3", "image_token": "<image_soft_token>"},
)


register_template(
    "glm4",
    user="<|user|>\n{{content}}<|assistant|>",
    assistant="\n{{content}}",
    system="<|system|>\n{{content}}",
    function="{{content}}",
    observation="<|observation|>\n{{content}}<|assistant|>",
    prefix="[gMASK]<sop>",
    tool_format="glm4",
    stop_words=["<|user|>", "<|observation|>"],
    efficient_eos=True,
)


register_template(
    "deepseek",
    user="User: {{content}}\n\nAssistant:",
    system="{{content}}\n\n",
    prefix=[BOS],
)


register_template(
    "deepseek3",
    user="<｜User｜>{{content}}<｜Assistant｜>",
    prefix=[BOS],
)


register_template(
    "phi",
    user="<|user|>\n{{content}}<|end|>\n<|assistant|>\n",
    assistant="{{content}}<|end|>\n",
    system="<|system|>\n{{content}}<|end|>\n",
    stop_words=["<|end|>"],
    replace_eos=True,
)


register_template(
    "phi4",
    user="<|im_start|>user<|im_sep|>{{content}}<|im_end|><|im_start|>assistant<|im_sep|>",
    assistant="{{content}}<|im_end|>",
    system="<|im_start|>system<|im_sep|>{{content}}<|im_end|>",
    stop_words=["<|im_end|>"],
    replace_eos=True,
)


register_template(
    "yi",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    stop_words=["<|im_end|>"],
)


register_template(
    "zephyr",
    user=["<|user|>\n{{content}}", EOS, "<|assistant|>\n"],
    system=["<|system|>\n{{content}}", EOS],
    default_system="You are Zephyr, a helpful assistant.",
)


register_template(
    "cohere",
    user=(
        "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
    ),
    system="<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>{{content}}<|END_OF_TURN_TOKEN|>",
    prefix=[BOS],
)
