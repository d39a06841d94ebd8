"""Side-encoder backends on this CPU (issue 28's ONNX Runtime lever): texts/s of the frozen MiniLM side encoder
over real side texts (MDCA captions of Twitter-2015, cut at 64 tokens), one thread, batch 16, for PyTorch fp32
(the reference), PyTorch int8 as served (``--quantize side``: ``lrsa.model.quantize.quantize_linear_int8``, its
default recipe), ONNX Runtime fp32 and ONNX Runtime int8 (``onnxruntime.quantization.quantize_dynamic``, its
default per-tensor recipe), with each one's mean cosine similarity to the reference states. Prints one JSON
line; records nothing.

ONNX Runtime is not a dependency of lrsa; install it beside (pins as measured):

    .venv/bin/uv pip install --python .venv/bin/python onnxruntime==1.32.0 onnx==1.23.2 onnxscript==0.7.2
    LRSA_DATA_DIR=../shared/data .venv/bin/python benchmarks/side_encoder_backends.py [--texts 512]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=512)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise SystemExit("side_encoder_backends: needs onnxruntime (see this script's docstring)") from None
    import torch
    from transformers import AutoModel, AutoTokenizer

    from lrsa.data.side import side_inputs
    from lrsa.env import machine
    from lrsa.features.text import resolve_backbone
    from lrsa.model.quantize import DEFAULT_RECIPE, quantize_linear_int8

    torch.set_num_threads(args.threads)
    path = resolve_backbone("minilm")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    caps = side_inputs("twitter2015")["mdca_captions"]
    texts = ["; ".join(v[:4]) for v in list(caps.values())[: args.texts]]
    enc = tok(texts, truncation=True, max_length=64, padding="longest", return_tensors="pt")
    ids, att = enc["input_ids"], enc["attention_mask"]
    B = args.batch

    def timed(step) -> tuple[float, torch.Tensor]:
        step(0)  # warm-up
        t, outs = time.perf_counter(), [step(b) for b in range(0, len(texts), B)]
        return len(texts) / (time.perf_counter() - t), torch.cat(outs)

    with torch.inference_mode():
        ref_rate, ref = timed(lambda b: model(input_ids=ids[b:b + B], attention_mask=att[b:b + B]).last_hidden_state)
        q = quantize_linear_int8(copy.deepcopy(model))  # the served side encoder's int8 path
        q_rate, q_out = timed(lambda b: q(input_ids=ids[b:b + B], attention_mask=att[b:b + B]).last_hidden_state)

    class Hidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "minilm.onnx", Path(tmp) / "minilm_int8.onnx"
        dyn = {0: "batch", 1: "length"}
        torch.onnx.export(Hidden(model), (ids[:B], att[:B]), str(fp32), input_names=["input_ids", "attention_mask"],
                          output_names=["hidden"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "hidden": dyn})
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        for name, file in (("ort_fp32", fp32), ("ort_int8", int8)):
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            s = ort.InferenceSession(str(file), so, providers=["CPUExecutionProvider"])
            rates[name] = timed(lambda b: torch.from_numpy(s.run(None, {"input_ids": ids[b:b + B].numpy(),
                                                                        "attention_mask": att[b:b + B].numpy()})[0]))
    m = att.bool()

    def cos(x: torch.Tensor) -> float:
        return round(torch.nn.functional.cosine_similarity(x[m], ref[m], dim=-1).mean().item(), 4)

    print(json.dumps({"texts_per_s": {"torch_fp32": round(ref_rate, 1), "torch_int8": round(q_rate, 1),
                                      **{k: round(v[0], 1) for k, v in rates.items()}},
                      "cosine_to_reference": {"torch_int8": cos(q_out), **{k: cos(v[1]) for k, v in rates.items()}},
                      "torch_int8_recipe": DEFAULT_RECIPE, "shape": list(ids.shape), "onnxruntime": ort.__version__,
                      "machine": machine(args.threads)}))


if __name__ == "__main__":
    main()
