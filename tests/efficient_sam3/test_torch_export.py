import torch

from efficient_sam3 import EfficientSam3Model
from model_helpers import open_memory_path


class VideoStep(torch.nn.Module):
    def __init__(self, model: EfficientSam3Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values, input_ids, attention_mask, memory_features, memory_mask):
        out = self.model.forward_video(pixel_values, input_ids, memory_features, memory_mask, attention_mask)
        return out.pred_masks, out.pred_boxes, out.pred_logits, out.presence_logits, out.iou_scores


def test_forward_video_passes_torch_export(tiny_model):
    inputs = (
        torch.randn(1, 3, 504, 504),
        torch.randint(0, 49406, (1, 32)),
        torch.ones(1, 32, dtype=torch.long),
        torch.randn(1, 8, 256, 18, 18),
        torch.tensor([[False] * 5 + [True] * 3]),
    )
    with torch.no_grad():
        open_memory_path(tiny_model, 0.5)
        exported = torch.export.export(VideoStep(tiny_model), inputs)
        expected = VideoStep(tiny_model)(*inputs)
        got = exported.module()(*inputs)
    for a, b in zip(expected, got):
        assert (a - b).abs().max() <= 1e-5
    # No data-dependent ops survive in the graph.
    targets = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    forbidden = {"aten.nonzero.default", "aten.item.default", "aten._local_scalar_dense.default",
                 "aten._assert_async.msg", "aten.index_put.default"}
    assert not targets & forbidden
