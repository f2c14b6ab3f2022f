import pytest
import torch

from efficient_sam3 import EfficientSam3Config, EfficientSam3Model


@pytest.fixture(scope="session")
def tiny_config() -> EfficientSam3Config:
    return EfficientSam3Config.preset("tiny")


@pytest.fixture()
def tiny_model(tiny_config) -> EfficientSam3Model:
    torch.manual_seed(0)
    return EfficientSam3Model(tiny_config).eval()
