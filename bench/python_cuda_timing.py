"""mixlens.hf.attention on a CUDA transformers model: the library's kernels on the model's GPU
against the host path (mixlens_model on the CPU, the captured tensors copied over), on a random
Mamba-130m-sized model (24 layers, d_model 768, d_inner 1536, N 16) made here. Prints one line per
case: wall time per call (median of `repeats` after one warm-up, the model's own forward included)
and the largest relative difference of the rollout from the CPU's. Run by bench/run_python_cuda.sh."""

import statistics
import time

import torch
import transformers

import mixlens
import mixlens.hf


def timed(call, repeats):
    call()  # warm-up: uploads, cuBLAS handles, the stream-ordered pool
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t = time.perf_counter()
        result = call()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main():
    torch.manual_seed(0)
    config = transformers.MambaConfig(vocab_size=50280, hidden_size=768, num_hidden_layers=24, state_size=16,
                                      expand=2, conv_kernel=4)
    model = transformers.MambaForCausalLM(config).cuda().eval()
    gpu = mixlens.hf.load(model)
    cpu = gpu.to("cpu")
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters, {gpu.device} and cpu")
    for L, repeats in ((256, 3), (1024, 3)):
        ids = torch.randint(0, config.vocab_size, (L,), generator=torch.Generator().manual_seed(L))
        t_gpu, a_gpu = timed(lambda: mixlens.hf.attention(model, ids, mixlens_model=gpu), repeats)
        line = f"L {L}: hf.attention on the GPU {t_gpu * 1e3:.1f} ms"
        if L <= 256:  # the host path at L 1024 takes minutes
            t = time.perf_counter()
            a_cpu = mixlens.hf.attention(model, ids, mixlens_model=cpu)
            t_cpu = time.perf_counter() - t
            diff = float((a_gpu.rollout - a_cpu.rollout).abs().max() / a_cpu.rollout.abs().max())
            line += f", on the host {t_cpu * 1e3:.0f} ms ({t_cpu / t_gpu:.0f}x), rollout differs by {diff:.2e}"
        with torch.no_grad():
            t_fwd, _ = timed(lambda: model(input_ids=ids.view(1, -1).cuda()), repeats)
        line += f"; transformers' forward alone {t_fwd * 1e3:.1f} ms"
        print(line, flush=True)


if __name__ == "__main__":
    main()
