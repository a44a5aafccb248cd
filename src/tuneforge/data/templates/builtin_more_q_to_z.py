"""Built-in chat templates: more families, names q to z.

Facts (slot strings, stop words, default system prompts, flags) from LLaMA-Factory 0.9.5, written in our
declaration format (registry.register_template; unlisted arguments take its defaults). Token parity with
LLaMA-Factory is tested for every template here (tests/data/test_templates_lf.py).

Templates with `media` are multimodal in LLaMA-Factory (the facts name the plugin and placeholder tokens);
here they encode text only.
"""

from .registry import register_template
from .slots import BOS, EOS, Token


register_template(
    "qwen2_audio",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    default_system="You are a helpful assistant.",
    stop_words=["<|im_end|>"],
    replace_eos=True,
    media={"plugin": "qwen2_audio", "audio_token": "<|AUDIO|>"},
)


register_template(
    "qwen2_omni",
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
    media={
        "plugin": "qwen2_omni",
        "image_token": "<|IMAGE|>",
        "video_token": "<|VIDEO|>",
        "audio_token": "<|AUDIO|>",
        "vision_bos_token": "<|vision_bos|>",
        "vision_eos_token": "<|vision_eos|>",
        "audio_bos_token": "<|audio_bos|>",
        "audio_eos_token": "<|audio_eos|>",
    },
)


register_template(
    "qwen3_omni",
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
        "plugin": "qwen2_omni",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "audio_token": "<|audio_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
        "audio_bos_token": "<|audio_start|>",
        "audio_eos_token": "<|audio_end|>",
    },
)


register_template(
    "qwen3_omni_nothink",
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
    media={
        "plugin": "qwen2_omni",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "audio_token": "<|audio_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
        "audio_bos_token": "<|audio_start|>",
        "audio_eos_token": "<|audio_end|>",
    },
)


register_template(
    "qwen2_vl",
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
    media={
        "plugin": "qwen2_vl",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
)


register_template(
    "qwen3_vl",
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
        "plugin": "qwen3_vl",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
)


register_template(
    "qwen3_vl_nothink",
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
    media={
        "plugin": "qwen3_vl",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
)


register_template(
    "qwen3_5",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation=(
        "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    tool_format="qwen3_5",
    stop_words=["<|im_end|>"],
    replace_eos=True,
    reasoning=True,
    media={
        "plugin": "qwen3_vl",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
)


register_template(
    "qwen3_5_nothink",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation=(
        "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    tool_format="qwen3_5",
    stop_words=["<|im_end|>"],
    replace_eos=True,
    media={
        "plugin": "qwen3_vl",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
)


register_template(
    "qwen3_6",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    observation=(
        "<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    tool_format="qwen3_5",
    stop_words=["<|im_end|>"],
    replace_eos=True,
    reasoning=True,
    media={
        "plugin": "qwen3_vl",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
)


register_template(
    "sailor",
    user="<|im_start|>question\n{{content}}<|im_end|>\n<|im_start|>answer\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    default_system=(
        "You are an AI assistant named Sailor created by Sea AI Lab. Your answer should "
        "be friendly, unbiased, faithful, informative and detailed."
    ),
    stop_words=["<|im_end|>"],
)


register_template(
    "seed_coder",
    user=[BOS, "user\n{{content}}", EOS, BOS, "assistant\n"],
    system=[BOS, "system\n{{content}}", EOS],
    default_system=(
        "You are an AI programming assistant, utilizing the Seed-Coder model, developed "
        "by ByteDance Seed, and you only answer questions related to computer science. For "
        "politically sensitive questions, security and privacy issues, and other non-computer "
        "science questions, you will refuse to answer.\n\n"
    ),
)


register_template(
    "seed_oss",
    user=[BOS, "user\n{{content}}", EOS, BOS, "assistant\n"],
    system=[BOS, "system\n{{content}}", EOS],
    function=[BOS, "\n{{content}}", EOS],
    tool_format="seed_oss",
    thought_words=("<seed:think>", "</seed:think>"),
    reasoning=True,
)


register_template(
    "smollm",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    stop_words=["<|im_end|>"],
)


register_template(
    "smollm2",
    user="<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n",
    assistant="{{content}}<|im_end|>\n",
    system="<|im_start|>system\n{{content}}<|im_end|>\n",
    default_system="You are a helpful AI assistant named SmolLM, trained by Hugging Face.",
    stop_words=["<|im_end|>"],
)


register_template(
    "solar",
    user="### User:\n{{content}}\n\n### Assistant:\n",
    system="### System:\n{{content}}\n\n",
    efficient_eos=True,
)


register_template(
    "starchat",
    user="<|user|>\n{{content}}<|end|>\n<|assistant|>",
    assistant="{{content}}<|end|>\n",
    system="<|system|>\n{{content}}<|end|>\n",
    stop_words=["<|end|>"],
)


register_template(
    "telechat2",
    user="<_user>{{content}}<_bot>",
    system="<_system>{{content}}",
    default_system="你是中国电信星辰语义大模型，英文名是TeleChat，你是由中电信人工智能科技有限公司和中国电信人工智能研究院（TeleAI）研发的人工智能助手。",
)


register_template(
    "video_llava",
    user="USER: {{content}} ASSISTANT:",
    default_system=(
        "A chat between a curious user and an artificial intelligence assistant. The assistant "
        "gives helpful, detailed, and polite answers to the user's questions."
    ),
    media={"plugin": "video_llava", "image_token": "<image>", "video_token": "<video>"},
)


register_template(
    "xuanyuan",
    user="Human: {{content}} Assistant:",
    default_system=(
        "以下是用户和人工智能助手之间的对话。用户以Human开头，人工智能助手以Assistant开头，会对人类提出的问题给出有帮助、高质量、详细和礼貌的回答，并且总是拒绝参与与不道德、不安全、有争议、政治敏感等相关的话题、问题和指示。\n"
    ),
)


register_template(
    "yi_vl",
    user="### Human: {{content}}\n### Assistant:",
    assistant="{{content}}\n",
    default_system=(
        "This is a chat between an inquisitive human and an AI assistant. Assume the role "
        "of the AI assistant. Read all the images carefully, and respond to the human's "
        "questions with informative, helpful, detailed and polite answers. 这是一个好奇的人类和一个人工智能助手之间的对话。假设你扮演这个AI助手的角色。仔细阅读所有的图像，并对人类的问题做出信息丰富、有帮助、详细的和礼貌的回答。\n"
        "\n"
    ),
    stop_words=["###"],
    efficient_eos=True,
    media={"plugin": "llava", "image_token": "<image>"},
)


register_template(
    "youtu",
    user="<|User|>{{content}}<|Assistant|>",
    assistant="{{content}}<|end_of_text|>",
    function="{{content}}",
    observation="<tool_response>\n{{content}}\n</tool_response><|Assistant|>",
    prefix=[BOS],
    stop_words=["<|end_of_text|>"],
    replace_eos=True,
    reasoning=True,
)


register_template(
    "youtu_vl",
    user="<|begin_of_text|>user\n{{content}}<|end_of_text|>\n<|begin_of_text|>assistant\n",
    assistant="{{content}}<|end_of_text|>\n",
    system="<|begin_of_text|>system\n{{content}}<|end_of_text|>\n",
    default_system="You are a helpful assistant.",
    stop_words=["<|end_of_text|>"],
    media={
        "plugin": "youtu_vl",
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_bos_token": "<|vision_start|>",
        "vision_eos_token": "<|vision_end|>",
    },
)


register_template(
    "yuan",
    user=["{{content}}", Token("<sep>")],
    assistant="{{content}}<eod>\n",
    stop_words=["<eod>"],
)
