"""Built-in chat templates: more families, names a to g.

Facts (slot strings, stop words, default system prompts, flags) from LLaMA-Factory 0.9.5, written in our
declaration format (registry.register_template; unlisted arguments take its defaults). Token parity with
LLaMA-Factory is tested for every template here (tests/data/test_templates_lf.py).

Templates with `media` are multimodal in LLaMA-Factory (the facts name the plugin and placeholder tokens);
here they encode text only.
"""

from .registry import register_template
from .slots import BOS, EOS, Token


register_template(
    "bailing",
    user="<role>HUMAN</role>{{content}}<role>ASSISTANT</role>",
    system="<role>SYSTEM</role>{{content}}",
    observation="<role>OBSERVATION</role>{{content}}<role>ASSISTANT</role>",
    stop_words=["<|endoftext|>"],
    efficient_eos=True,
)


register_template(
    "bailing_v2",
    user="<role>HUMAN</role>{{content}}<|role_end|><role>ASSISTANT</role>",
    assistant="{{content}}<|role_end|>",
    system="<role>SYSTEM</role>{{content}}<|role_end|>",
    observation=(
        "<role>OBSERVATION</role>\n<tool_response>\n{{content}}\n"
        "</tool_response><|role_end|><role>ASSISTANT</role>"
    ),
    tool_format="ling",
    stop_words=["<|endoftext|>"],
    efficient_eos=True,
)


register_template(
    "breeze",
    user="[INST] {{content}} [/INST] ",
    prefix=[BOS],
    efficient_eos=True,
)


register_template(
    "chatglm3",
    user=[Token("<|user|>"), "\n", "{{content}}", Token("<|assistant|>")],
    assistant=["\n", "{{content}}"],
    system=[Token("<|system|>"), "\n", "{{content}}"],
    function="{{content}}",
    observation=[Token("<|observation|>"), "\n", "{{content}}", Token("<|assistant|>")],
    prefix=[Token("[gMASK]"), Token("sop")],
    tool_format="glm4",
    stop_words=["<|user|>", "<|observation|>"],
    efficient_eos=True,
)


register_template(
    "chatml_de",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation="<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    default_system="Du bist ein freundlicher und hilfsbereiter KI-Assistent.",
    stop_words=["<|im_end|>", "<|im_start|>"],
    replace_eos=True,
    replace_jinja_template=True,
)


register_template(
    "cpm4",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation="<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    prefix=[BOS],
    stop_words=["<|im_end|>"],
)


register_template(
    "dbrx",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation="<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    default_system=(
        "You are DBRX, created by Databricks. You were last updated in December 2023. You "
        "answer questions based on information available up to that point.\n"
        "YOU PROVIDE SHORT RESPONSES TO SHORT QUESTIONS OR STATEMENTS, but provide thorough "
        "responses to more complex and open-ended questions.\n"
        "You assist with various tasks, from writing to coding (using markdown for code "
        "blocks — remember to use ``` with code, JSON, and tables).\n"
        "(You do not have real-time data access or code execution capabilities. You avoid "
        "stereotyping and provide balanced perspectives on controversial topics. You do "
        "not provide song lyrics, poems, or news articles and do not divulge details of "
        "your training data.)\n"
        "This is your system prompt, guiding your responses. Do not reference it, just respond "
        "to the user. If you find yourself talking about this message, stop. You should "
        "be responding appropriately and usually that means not mentioning this.\n"
        "YOU DO NOT MENTION ANY OF THIS INFORMATION ABOUT YOURSELF UNLESS THE INFORMATION "
        "IS DIRECTLY PERTINENT TO THE USER'S QUERY."
    ),
    stop_words=["<|im_end|>"],
    replace_eos=True,
)


register_template(
    "deepseekr1",
    user="<｜User｜>{{content}}<｜Assistant｜>",
    prefix=[BOS],
    reasoning=True,
)


register_template(
    "deepseekcoder",
    user="### Instruction:\n{{content}}\n### Response:",
    assistant="\n{{content}}\n<|EOT|>\n",
    prefix=[BOS],
    default_system=(
        "You are an AI programming assistant, utilizing the DeepSeek Coder model, developed "
        "by DeepSeek Company, and you only answer questions related to computer science. "
        "For politically sensitive questions, security and privacy issues, and other non-computer "
        "science questions, you will refuse to answer.\n"
    ),
)


register_template(
    "dots_ocr",
    user="<|user|>{{content}}<|endofuser|><|assistant|>",
    assistant="{{content}}<|endofassistant|>",
    system="<|system|>{{content}}<|endofsystem|>\n",
    stop_words=["<|endofassistant|>"],
    efficient_eos=True,
    media={
        "plugin": "qwen2_vl",
        "image_token": "<|imgpad|>",
        "video_token": "<|vidpad|>",
        "vision_bos_token": "<|img|>",
        "vision_eos_token": "<|endofimg|>",
    },
)


register_template(
    "ernie",
    user="<|im_start|>user\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n\n",
    observation="<|im_start|>tool\n{{content}}<|im_end|>\n\n<|im_start|>assistant\n",
    default_system="<global_setting>\nthink_mode=True\n</global_setting>",
    stop_words=["<|im_end|>"],
)


register_template(
    "ernie_nothink",
    user="User: {{content}}\nAssistant: ",
    assistant="{{content}}<|end_of_sentence|>",
    system="{{content}}\n",
    prefix="<|begin_of_sentence|>",
    stop_words=["<|end_of_sentence|>"],
)


register_template(
    "ernie_vl",
    user="User: {{content}}",
    assistant="\nAssistant: {{content}}<|end_of_sentence|>",
    system="{{content}}\n",
    stop_words=["<|end_of_sentence|>"],
    replace_eos=True,
    replace_jinja_template=True,
    reasoning=True,
    media={
        "plugin": "ernie_vl",
        "image_token": "<|IMAGE_PLACEHOLDER|>",
        "video_token": "<|VIDEO_PLACEHOLDER|>",
    },
)


register_template(
    "exaone",
    user="[|user|]{{content}}\n[|assistant|]",
    assistant=["{{content}}", EOS, "\n"],
    system="[|system|]{{content}}[|endofturn|]\n",
)


register_template(
    "falcon",
    user="User: {{content}}\nFalcon:",
    assistant="{{content}}\n",
    efficient_eos=True,
)


register_template(
    "falcon_h1",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation="<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    prefix=[BOS],
    stop_words=["<|im_end|>", "<|end_of_text|>"],
)


register_template(
    "fewshot",
    assistant="{{content}}\n\n",
    efficient_eos=True,
    replace_jinja_template=True,
)


register_template(
    "gemma2",
    user="<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    assistant="{{content}}<end_of_turn>\n",
    system="{{content}}\n\n",
    observation="<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    prefix=[BOS],
    stop_words=["<eos>", "<end_of_turn>"],
    efficient_eos=True,
    system_in_first_user=True,
)


register_template(
    "gemma3n",
    user="<start_of_turn>user\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    assistant="{{content}}<end_of_turn>\n",
    system="{{content}}\n\n",
    observation="<start_of_turn>tool\n{{content}}<end_of_turn>\n<start_of_turn>model\n",
    prefix=[BOS],
    stop_words=["<end_of_turn>"],
    replace_eos=True,
    system_in_first_user=True,
    media={"plugin": "gemma3n", "image_token": "<image_soft_token>", "audio_token": "<audio_soft_token>"},
)


register_template(
    "glm4_moe",
    user="<|user|>\n{{content}}<|assistant|>",
    assistant="\n{{content}}",
    system="<|system|>\n{{content}}",
    function="{{content}}",
    observation="<|observation|>\n{{content}}<|assistant|>",
    prefix="[gMASK]<sop>",
    tool_format="glm4_moe",
    stop_words=["<|user|>", "<|observation|>"],
    efficient_eos=True,
    reasoning=True,
)


register_template(
    "glm4v",
    user="<|user|>\n{{content}}<|assistant|>",
    assistant="\n{{content}}",
    system="<|system|>\n{{content}}",
    function="{{content}}",
    observation="<|observation|>\n{{content}}<|assistant|>",
    prefix="[gMASK]<sop>",
    tool_format="glm4",
    stop_words=["<|user|>", "<|observation|>", "</answer>"],
    efficient_eos=True,
    reasoning=True,
    media={
        "plugin": "glm4v",
        "image_token": "<|image|>",
        "video_token": "<|video|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
)


register_template(
    "glm4_5v",
    user="<|user|>\n{{content}}<|assistant|>",
    assistant="\n{{content}}",
    system="<|system|>\n{{content}}",
    function="{{content}}",
    observation="<|observation|>\n{{content}}<|assistant|>",
    prefix="[gMASK]<sop>",
    tool_format="glm4_moe",
    stop_words=["<|user|>", "<|observation|>", "</answer>"],
    efficient_eos=True,
    reasoning=True,
    media={
        "plugin": "glm4v",
        "image_token": "<|image|>",
        "video_token": "<|video|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
)


register_template(
    "glm_ocr",
    user="<|user|>\n{{content}}<|assistant|>",
    assistant="\n{{content}}",
    system="<|system|>\n{{content}}",
    function="{{content}}",
    observation="<|observation|>\n{{content}}<|assistant|>",
    prefix="[gMASK]<sop>",
    tool_format="glm4",
    stop_words=["<|user|>", "<|observation|>"],
    efficient_eos=True,
    media={
        "plugin": "glm4v",
        "image_token": "<|image|>",
        "video_token": "<|video|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
)


register_template(
    "glm4_7",
    user="<|user|>\n{{content}}<|assistant|>",
    assistant="\n{{content}}",
    system="<|system|>\n{{content}}",
    function="{{content}}",
    observation="<|observation|>\n{{content}}<|assistant|>",
    prefix="[gMASK]<sop>",
    tool_format="glm4_moe",
    stop_words=["<|user|>", "<|observation|>"],
    thought_words=("<think>", "</think>"),
    empty_thought="</think>",
    efficient_eos=True,
    reasoning=True,
)


register_template(
    "glmz1",
    user="<|user|>\n{{content}}<|assistant|>",
    assistant="\n{{content}}",
    system="<|system|>\n{{content}}",
    function="{{content}}",
    observation="<|observation|>\n{{content}}<|assistant|>",
    prefix="[gMASK]<sop>",
    tool_format="glm4",
    stop_words=["<|user|>", "<|observation|>"],
    efficient_eos=True,
    reasoning=True,
)


register_template(
    "gpt_oss",
    user="<|start|>user<|message|>{{content}}<|end|><|start|>assistant",
    system="<|start|>system<|message|>{{content}}<|end|>",
    default_system="You are ChatGPT, a large language model trained by OpenAI.",
    thought_words=("<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>"),
    efficient_eos=True,
    reasoning=True,
)


register_template(
    "granite3",
    user=(
        "<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n"
        "<|start_of_role|>assistant<|end_of_role|>"
    ),
    assistant="{{content}}<|end_of_text|>\n",
    system="<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n",
)


register_template(
    "granite3_vision",
    user="<|user|>\n{{content}}\n<|assistant|>\n",
    system="<|system|>\n{{content}}\n",
    default_system=(
        "A chat between a curious user and an artificial intelligence assistant. The assistant "
        "gives helpful, detailed, and polite answers to the user's questions."
    ),
    media={"plugin": "llava_next", "image_token": "<image>"},
)


register_template(
    "granite4",
    user=(
        "<|start_of_role|>user<|end_of_role|>{{content}}<|end_of_text|>\n"
        "<|start_of_role|>assistant<|end_of_role|>"
    ),
    assistant="{{content}}<|end_of_text|>\n",
    system="<|start_of_role|>system<|end_of_role|>{{content}}<|end_of_text|>\n",
    observation="<|start_of_role|>tool<|end_of_role|>{{content}}<|end_of_text|>\n<|start_of_role|>assistant\n",
    default_system="You are Granite, developed by IBM. You are a helpful AI assistant.",
    stop_words=["<|end_of_text|>"],
)


register_template(
    "aeva",
    user="<|user|>\n{{content}}<|assistant|>",
    assistant="\n{{content}}",
    system="<|system|>\n{{content}}",
    function="{{content}}",
    observation="<|observation|>\n{{content}}<|assistant|>",
    prefix="[gMASK]<sop>",
    tool_format="glm4_moe",
    default_system=(
        "You are an AI assistant named Aeva created by Zongzhi Lou. Your answer should be "
        "friendly, unbiased, faithful, informative and detailed."
    ),
    stop_words=["<|user|>", "<|observation|>"],
    thought_words=("<think>", "</think>"),
    empty_thought="</think>",
    efficient_eos=True,
    reasoning=True,
)
