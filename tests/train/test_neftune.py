"""NEFTune (neftune_noise_alpha): during training the embedding output gets uniform noise in
±alpha/sqrt(L*d) (L the padded row length, d the hidden size); evaluation sees the clean embeddings."""

import pytest
import torch

import tuneforge.train.stages.sft as sft_recipe

from test_train_recipes import run_recipe

ALPHA = 5.0


@pytest.fixture(scope="module")
def captured(tmp_path_factory, tiny_llama_dir):
    """Clean embeddings and what the first decoder layer received, for every forward of a short run with
    evaluation after each step (the NEFTune hook is active during the whole of train())."""
    model_dir = tiny_llama_dir
    records = []
    original_load = sft_recipe.load_model

    def load_with_probes(*args, **kwargs):
        model = original_load(*args, **kwargs)
        embeddings = model.get_input_embeddings()
        # Registered before the Trainer adds its NEFTune hook, so this one sees the clean output.
        embeddings.register_forward_hook(lambda module, inputs, output: records.append(
            {"training": module.training, "clean": output.detach().clone()}))

        def first_layer_input(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            if records and "noisy" not in records[-1]:  # checkpointing recomputes the layer in backward
                records[-1]["noisy"] = hidden.detach().clone()

        first_layer = next(module for name, module in model.named_modules() if name.endswith("layers.0"))
        first_layer.register_forward_pre_hook(first_layer_input, with_kwargs=True)
        return model

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sft_recipe, "load_model", load_with_probes)
        run_recipe("sft", model_dir, tmp_path_factory.mktemp("neftune_run"), with_eval=True,
                   neftune_noise_alpha=ALPHA, max_steps=2, eval_dataset="toy_rows", eval_strategy="steps",
                   eval_steps=1, save_steps=100)
    return records


def test_training_noise_is_uniform_in_alpha_over_sqrt_length_times_hidden(captured):
    training = [record for record in captured if record["training"]]
    assert len(training) == 2
    for record in training:
        noise = record["noisy"] - record["clean"]
        rows, length, hidden = noise.shape
        # the 8 rows padded to a multiple of 8, not one padding-free row: L is the padded row length
        assert (rows, length % 8, hidden) == (8, 0, 64)
        bound = ALPHA / (length * hidden) ** 0.5
        assert noise.abs().max() <= bound * (1 + 1e-5)
        assert noise.abs().max() >= 0.98 * bound  # thousands of uniform draws reach the edge
        assert noise.mean().abs() < 0.05 * bound
        assert noise.std() == pytest.approx(bound / 3 ** 0.5, rel=0.05)  # std of U(-b, b) is b / sqrt(3)


def test_evaluation_sees_clean_embeddings(captured):
    evaluation = [record for record in captured if not record["training"]]
    assert evaluation  # evaluation ran while the hook was installed
    assert all(torch.equal(record["noisy"], record["clean"]) for record in evaluation)
