"""Knowledge distillation in `pointengine train`: the divergence against a float64 formula, a student
that moves toward its teacher, weight 0 equal to plain training, and bad settings refused."""

import pytest
import safetensors.torch
import torch

from pointengine import SparseTensor
from pointengine.models import build_model
from pointengine.models.checkpoint import save_checkpoint
from pointengine.train import new_settings, train
from pointengine.train.distill import Distillation, load_teacher
from pointengine.train.state import WEIGHTS_FILE

pytestmark = pytest.mark.usefixtures("one_thread")


def quiet(*_):
    pass


class FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return x.replace_feats(self.logits)


def test_divergence_is_the_softened_kl_times_t_squared():
    g = torch.Generator().manual_seed(0)
    teacher_logits, student_logits = torch.randn(50, 7, generator=g) * 3, torch.randn(50, 7, generator=g) * 3
    coords = torch.cat([torch.zeros(50, 1, dtype=torch.int32), torch.arange(150, dtype=torch.int32).view(50, 3)], 1)
    inputs = SparseTensor(torch.zeros(50, 1), coords)
    for t in (1.0, 2.0, 4.5):
        got = Distillation(FixedLogits(teacher_logits), 0.5, t).divergence_sum(inputs, student_logits)
        p = torch.softmax(teacher_logits.double() / t, 1)
        expected = (p * (p.log() - torch.log_softmax(student_logits.double() / t, 1))).sum() * t * t
        assert abs(float(got) - float(expected)) <= 1e-5 * float(expected)


def test_student_moves_toward_teacher(tiny_config, tiny_dataset, tmp_path):
    """Labels left out (weight 1): the student's divergence from a differently seeded teacher falls."""
    teacher_settings = new_settings(tiny_config(), train_sequences=["00"], val_sequences=[], epochs=2,
                                    batch_size=1, optimizer="adamw", lr=1e-2, warmup_epochs=0, seed=5)
    train(teacher_settings, tiny_dataset, tmp_path / "teacher", progress=False, log=quiet)
    settings = new_settings(tiny_config(), train_sequences=["00"], val_sequences=[], epochs=3, batch_size=1,
                            optimizer="adamw", lr=1e-2, warmup_epochs=0, distill=str(tmp_path / "teacher" / WEIGHTS_FILE),
                            distill_weight=1.0)
    records = train(settings, tiny_dataset, tmp_path / "student", progress=False, log=quiet)
    losses = [r.loss for r in records]
    assert losses[-1] < 0.7 * losses[0], losses


def test_weight_zero_is_plain_training(tiny_config, tiny_dataset, tmp_path):
    common = dict(train_sequences=["00"], val_sequences=[], epochs=1, batch_size=1, optimizer="sgd", lr=0.05,
                  warmup_epochs=0)
    teacher = save_checkpoint(build_model(new_settings(tiny_config(), **common).model_config()),
                              tmp_path / "teacher.safetensors", new_settings(tiny_config(), **common).config)
    train(new_settings(tiny_config(), **common), tiny_dataset, tmp_path / "plain", progress=False, log=quiet)
    train(new_settings(tiny_config(), distill=str(teacher), distill_weight=0.0, **common), tiny_dataset,
          tmp_path / "zero", progress=False, log=quiet)
    plain = safetensors.torch.load_file(str(tmp_path / "plain" / WEIGHTS_FILE))
    zero = safetensors.torch.load_file(str(tmp_path / "zero" / WEIGHTS_FILE))
    assert plain.keys() == zero.keys() and all(torch.equal(plain[k], zero[k]) for k in plain)


@pytest.mark.parametrize(
    "given, message",
    [
        ({"distill_weight": 1.5}, r"distill_weight must be in \[0, 1\], got 1.5"),
        ({"distill_weight": -0.1}, r"distill_weight must be in \[0, 1\], got -0.1"),
        ({"distill_temperature": 0.0}, r"distill_temperature must be > 0, got 0.0"),
    ],
)
def test_bad_distill_settings(tiny_config, given, message):
    with pytest.raises(ValueError, match=message):
        new_settings(tiny_config(), distill="teacher.safetensors", **given)


def test_teacher_of_other_classes_is_refused(tiny_config, tmp_path):
    student = new_settings(tiny_config()).model_config()
    other = new_settings("minkunet_cr0.5_nuscenes")
    path = save_checkpoint(build_model(other.model_config()), tmp_path / "other.safetensors", other.config)
    with pytest.raises(ValueError, match=r"distill: the teacher .*other.safetensors predicts 16 classes, the student 19"):
        load_teacher(str(path), student, "cpu")
