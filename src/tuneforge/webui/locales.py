"""Labels of the web UI in English and Chinese, and the seed's grouping of the Train tab.

The seed (the Chinese notes our users come from) is the list of fields a user expects on the page, with
their names. This table gives each of those fields its label in both languages and its place; every
other declared parameter gets its English label from its name and its help text from its declaration,
so a parameter added to config/params/ appears on the page without touching this file.

A field is a parameter name, or one of the few page-only fields in form.PAGE_FIELDS (compute type,
booster, ...) that the form turns into parameters.
"""

from __future__ import annotations

LANGS = ("en", "zh")

# field -> (English label, Chinese label)
LABELS: dict[str, tuple[str, str]] = {
    # --- top bar
    "model_name": ("Model name", "模型名称"),
    "model_name_or_path": ("Model path", "模型路径"),
    "finetuning_type": ("Finetuning method", "微调方法"),
    "checkpoint_path": ("Checkpoint path", "检查点路径"),
    "quantization_bit": ("Quantization bit", "量化等级"),
    "quantization_method": ("Quantization method", "量化方法"),
    "template": ("Prompt template", "提示模板"),
    "rope_scaling": ("RoPE scaling", "RoPE 插值方法"),
    "booster": ("Booster", "加速方式"),
    # --- training stage parameters
    "stage": ("Stage", "训练阶段"),
    "dataset_dir": ("Data dir", "数据目录"),
    "dataset": ("Dataset", "数据集"),
    "learning_rate": ("Learning rate", "学习率"),
    "num_train_epochs": ("Epochs", "训练轮数"),
    "max_grad_norm": ("Maximum gradient norm", "最大梯度范数"),
    "max_samples": ("Max samples", "最大样本数"),
    "compute_type": ("Compute type", "计算类型"),
    "cutoff_len": ("Cutoff length", "截断长度"),
    "per_device_train_batch_size": ("Batch size", "批量大小"),
    "gradient_accumulation_steps": ("Gradient accumulation", "梯度累积"),
    "val_size": ("Val size", "验证集大小"),
    "lr_scheduler_type": ("LR scheduler", "学习率调度器"),
    # --- extra configuration
    "logging_steps": ("Logging steps", "日志间隔"),
    "save_steps": ("Save steps", "保存间隔"),
    "warmup_steps": ("Warmup steps", "预热步数"),
    "neftune_noise_alpha": ("NEFTune alpha", "NEFTune 噪声参数"),
    "optim": ("Optimizer", "优化器"),
    "packing": ("Pack sequences", "序列打包"),
    "neat_packing": ("Use neat packing", "使用无污染打包"),
    "train_on_prompt": ("Train on prompt", "学习提示词"),
    "mask_history": ("Mask history", "不学习历史对话"),
    "resize_vocab": ("Resize token embeddings", "更改词表大小"),
    "use_llama_pro": ("Enable LLaMA Pro", "使用 LLaMA Pro"),
    "shift_attn": ("Enable S^2 Attention", "使用 S^2 Attention"),
    "report_to": ("Enable external logger", "启用外部记录面板"),
    # --- freeze
    "freeze_trainable_layers": ("Trainable layers", "可训练层数"),
    "freeze_trainable_modules": ("Trainable modules", "可训练模块"),
    "freeze_extra_modules": ("Extra modules (optional)", "额外模块(非必填)"),
    # --- LoRA
    "lora_rank": ("LoRA rank", "LoRA 秩"),
    "lora_alpha": ("LoRA alpha", "LoRA 缩放系数"),
    "lora_dropout": ("LoRA dropout", "LoRA 随机丢弃"),
    "loraplus_lr_ratio": ("LoRA+ LR ratio", "LoRA+ 学习率比例"),
    "create_new_adapter": ("Create new adapter", "新建适配器"),
    "use_rslora": ("Use rslora", "使用 rslora"),
    "use_dora": ("Use DoRA", "使用 DoRA"),
    "pissa_init": ("Use PiSSA", "使用 PiSSA"),
    "lora_target": ("LoRA modules (optional)", "LoRA 作用模块(非必填)"),
    "additional_target": ("Additional modules (optional)", "附加模块(非必填)"),
    # --- RLHF
    "pref_beta": ("Beta value", "Beta 参数"),
    "pref_ftx": ("Ftx gamma", "Ftx gamma"),
    "pref_loss": ("Loss type", "损失类型"),
    "reward_model": ("Reward model", "奖励模型"),
    "ppo_score_norm": ("Score norm", "归一化分数"),
    "ppo_whiten_rewards": ("Whiten rewards", "白化奖励"),
    # --- GaLore
    "use_galore": ("Use GaLore", "使用 GaLore"),
    "galore_rank": ("GaLore rank", "GaLore 秩"),
    "galore_update_interval": ("Update interval", "更新间隔"),
    "galore_scale": ("GaLore scale", "GaLore 缩放系数"),
    "galore_target": ("GaLore modules", "GaLore 作用模块"),
    # --- BAdam
    "use_badam": ("Use BAdam", "使用 BAdam"),
    "badam_mode": ("BAdam mode", "BAdam 模式"),
    "badam_switch_mode": ("Switch mode", "切换策略"),
    "badam_switch_interval": ("Switch interval", "切换频率"),
    "badam_update_ratio": ("Update ratio", "Block 更新比例"),
    # --- output and devices
    "output_dir": ("Output dir", "输出目录"),
    "config_path": ("Config path", "配置路径"),
    "device_count": ("Device count", "设备数量"),
    "ds_stage": ("DeepSpeed stage", "DeepSpeed stage"),
    "ds_offload": ("Enable offload", "使用 offload"),
    # --- page-only fields outside the seed
    "ui_lang": ("Language", "语言"),
    "extra_args": ("Extra arguments (YAML)", "额外参数 (YAML)"),
}

# The seed's sections of the Train tab, in its order: section -> (English title, Chinese title, fields).
# The freeze / LoRA / RLHF / GaLore / BAdam panels hold their whole parameter group (seed fields first).
TRAIN_SECTIONS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("basic", "Training", "训练阶段参数", (
        "stage", "dataset_dir", "dataset", "learning_rate", "num_train_epochs", "max_grad_norm", "max_samples",
        "compute_type", "cutoff_len", "per_device_train_batch_size", "gradient_accumulation_steps", "val_size",
        "lr_scheduler_type")),
    ("extra", "Extra configurations", "附加配置", (
        "logging_steps", "save_steps", "warmup_steps", "neftune_noise_alpha", "optim", "packing", "neat_packing",
        "train_on_prompt", "mask_history", "resize_vocab", "use_llama_pro", "shift_attn", "report_to")),
    ("freeze", "Freeze tuning configurations", "部分参数微调设置", ("freeze_trainable_layers",
                                                              "freeze_trainable_modules", "freeze_extra_modules")),
    ("lora", "LoRA configurations", "LoRA 参数设置", (
        "lora_rank", "lora_alpha", "lora_dropout", "loraplus_lr_ratio", "create_new_adapter", "use_rslora",
        "use_dora", "pissa_init", "lora_target", "additional_target")),
    ("rlhf", "RLHF configurations", "RLHF 参数设置", (
        "pref_beta", "pref_ftx", "pref_loss", "reward_model", "ppo_score_norm", "ppo_whiten_rewards")),
    ("galore", "GaLore configurations", "GaLore 参数设置", (
        "use_galore", "galore_rank", "galore_update_interval", "galore_scale", "galore_target")),
    ("badam", "BAdam configurations", "BAdam 参数设置", (
        "use_badam", "badam_mode", "badam_switch_mode", "badam_switch_interval", "badam_update_ratio")),
]
TOP_FIELDS = ("model_name", "model_name_or_path", "finetuning_type", "checkpoint_path", "quantization_bit",
              "quantization_method", "template", "rope_scaling", "booster")
OUTPUT_FIELDS = ("output_dir", "config_path", "device_count", "ds_stage", "ds_offload")

# Words of the page itself (buttons, tabs, status lines).
TEXT: dict[str, tuple[str, str]] = {
    "tab_train": ("Train", "训练"),
    "tab_eval": ("Evaluate & Predict", "评估与预测"),
    "tab_chat": ("Chat", "对话"),
    "tab_export": ("Export", "导出"),
    "tab_runs": ("Past runs", "历史运行"),
    "more": ("More parameters", "更多参数"),
    "rollout": ("Rollout sampling (ppo, grpo)", "采样生成参数 (ppo, grpo)"),
    "other": ("Other parameters", "其他参数"),
    "preview_data": ("Preview dataset", "预览数据集"),
    "preview_cmd": ("Preview command", "预览命令"),
    "save_cfg": ("Save config", "保存配置"),
    "load_cfg": ("Load config", "载入配置"),
    "start": ("Start", "开始"),
    "abort": ("Abort", "中断"),
    "refresh": ("Refresh", "刷新"),
    "load_model": ("Load model", "加载模型"),
    "unload_model": ("Unload model", "卸载模型"),
    "send": ("Send", "发送"),
    "clear": ("Clear history", "清空历史"),
    "system": ("System prompt", "系统提示词"),
    "tools": ("Tools (JSON)", "工具列表 (JSON)"),
    "image": ("Image (vision-language models)", "图像 (多模态模型)"),
    "message": ("Message", "输入"),
    "generation": ("Generation settings", "生成参数"),
    "log": ("Log", "日志"),
    "loss": ("Loss", "损失"),
    "command": ("Command", "命令"),
    "output_root": ("Output root", "输出根目录"),
    "coming": ("coming: not implemented yet", "即将推出:尚未实现"),
}


def lang_index(lang: str) -> int:
    return 1 if lang == "zh" else 0


def label(field: str, lang: str = "en") -> str:
    """The field's label: the table's, else its parameter name made readable (`lora_rank` -> `Lora rank`)."""
    if field in LABELS:
        return LABELS[field][lang_index(lang)]
    return field.replace("_", " ").capitalize()


def text(key: str, lang: str = "en") -> str:
    """A word of the page; `section_<name>` is the title of a Train tab section."""
    if key.startswith("section_"):
        for section, english, chinese, _ in TRAIN_SECTIONS:
            if key == f"section_{section}":
                return chinese if lang == "zh" else english
    return TEXT[key][lang_index(lang)]
