# Runs mixlens-eval on the bundled demo checkpoint and on bad inputs.
#   cmake -DTOOL=<mixlens-eval> -DDATA=<tests/data> -DWORK=<scratch dir> -P mixlens_eval_test.cmake
# The numbers are checked by tests/analysis/faithfulness_test.cpp and
# tests/models/attribute_test.cpp; here: the outputs, the table, the refusals.
cmake_minimum_required(VERSION 3.25)
foreach(var TOOL DATA WORK)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "mixlens_eval_test: -D${var}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(failures 0)

set(EXPECT_TIMEOUT 300)
include(${CMAKE_CURRENT_LIST_DIR}/cli_expect.cmake)

# A failed run leaves neither --out nor a staging folder beside it.
function(expect_nothing name dir)
  file(GLOB partial ${WORK}/.*partial*)
  if(EXISTS ${dir} OR partial)
    message(SEND_ERROR "${name}: a failed run left ${dir} ${partial}")
    math(EXPR failures "${failures} + 1")
  endif()
  set(failures ${failures} PARENT_SCOPE)
endfunction()

set(demo ${DATA}/mamba_demo)
set(tokens ${DATA}/reference/mamba_demo/tokens_0.npy)

# ---- runs ---------------------------------------------------------------------------
expect(demo_all 0 "\\| method \\| AUC MoRF \\(logit\\).*\\| raw \\|.*\\| rollout \\|.*\\| mamba-attr \\|.*\\| grad-input \\|.*\\| random \\|"
  --model ${demo} --tokens-file ${tokens} --out ${WORK}/all --steps 4 --random-draws 2)
expect_files(demo_all ${WORK}/all faithfulness.json faithfulness.md faithfulness.png mixlens-eval.manifest)
file(READ ${WORK}/all/faithfulness.json json)
string(JSON morf_points LENGTH "${json}" methods rollout morf logit)
string(JSON per_sequence LENGTH "${json}" methods raw per_sequence)
if(NOT morf_points EQUAL 5 OR NOT per_sequence EQUAL 1)
  message(SEND_ERROR "demo_all: expected 5 curve points and 1 sequence, got ${morf_points} and ${per_sequence}")
  math(EXPR failures "${failures} + 1")
endif()
# The step-0 value of every curve is the unperturbed target logit.
string(JSON value GET "${json}" methods raw per_sequence 0 value)
string(JSON first GET "${json}" methods raw per_sequence 0 morf logit 0)
if(NOT value EQUAL first)
  message(SEND_ERROR "demo_all: step 0 (${first}) is not the unperturbed logit (${value})")
  math(EXPR failures "${failures} + 1")
endif()

file(WRITE ${WORK}/lines.txt "3 17 5 9 200 41\n\n176 96 57 101\n")
expect(lines_remove 0 "2 sequence\\(s\\); 2 method\\(s\\), 3 steps, mode remove.*\\| raw \\|.*\\| random \\|"
  --model ${demo} --token-lines ${WORK}/lines.txt --methods raw,random --steps 3 --mode remove --out ${WORK}/lines)
expect_files(lines_remove ${WORK}/lines faithfulness.json faithfulness.md faithfulness.png)
expect(rerun_replaces 0 "wrote"
  --model ${demo} --token-lines ${WORK}/lines.txt --methods rollout --steps 2 --target-position 2 --out ${WORK}/lines)
expect(help 0 "text tokenization is not available in\nC\\+\\+" --help)

# ---- refusals -----------------------------------------------------------------------
expect(missing_file 1 "missing\\.npy" --model ${demo} --tokens-file ${WORK}/missing.npy --out ${WORK}/missing)
expect_nothing(missing_file ${WORK}/missing)
expect(unknown_method 2 "--methods: unknown method 'lime' \\(expected raw, rollout, mamba-attr, grad-input, random, attn-grad or lrp\\)"
  --model ${demo} --tokens-file ${tokens} --methods raw,lime --out ${WORK}/lime)
expect_nothing(unknown_method ${WORK}/lime)
expect(steps_zero 2 "--steps: expected at least 1" --model ${demo} --tokens-file ${tokens} --steps 0 --out ${WORK}/zero)
expect_nothing(steps_zero ${WORK}/zero)
file(WRITE ${WORK}/vocab.txt "3 17 300 9\n")
expect(out_of_vocabulary 1 "vocab\\.txt' sequence 0: token 300 at position 2 is outside the vocabulary \\[0, 256\\)"
  --model ${demo} --token-lines ${WORK}/vocab.txt --out ${WORK}/vocab)
expect_nothing(out_of_vocabulary ${WORK}/vocab)
file(WRITE ${WORK}/word.txt "3 17 cat\n")
expect(not_an_id 1 "word\\.txt': line 1: 'cat' is not a token id" --model ${demo} --token-lines ${WORK}/word.txt --out ${WORK}/word)
expect(replace_token 1 "--replace-token 256 is outside the vocabulary"
  --model ${demo} --tokens-file ${tokens} --replace-token 256 --out ${WORK}/rt)
expect(target_position 1 "--target-position 48 is outside sequence 0 \\(48 tokens\\)"
  --model ${demo} --tokens-file ${tokens} --target-position 48 --out ${WORK}/tp)
# Mamba-2: every gradient method; Vision Mamba is refused by name.
expect(mamba2 0 "Mamba-2.*\\| mamba-attr \\|.*\\| grad-input \\|.*\\| attn-grad \\|.*\\| lrp \\|"
  --model ${DATA}/mamba2_tied_fp32 --tokens-file ${DATA}/reference/mamba2_tied_fp32/tokens_0.npy --out ${WORK}/m2
  --methods mamba-attr,grad-input,attn-grad,lrp --steps 3 --start-layer 1)
expect_files(mamba2 ${WORK}/m2 faithfulness.json faithfulness.md faithfulness.png)
expect(mamba2_start 1 "--start-layer 2 is not a layer in \\[0, 2\\)"
  --model ${DATA}/mamba2_tied_fp32 --tokens-file ${DATA}/reference/mamba2_tied_fp32/tokens_0.npy --out ${WORK}/m2s
  --start-layer 2)
expect_nothing(mamba2_start ${WORK}/m2s)
expect(vim_refused 1 "is a Vision Mamba model: mixlens-eval tests the attributions of Mamba, Falcon-Mamba and Mamba-2"
  --model ${DATA}/vim_mid_odd --tokens-file ${tokens} --out ${WORK}/vim)
expect_nothing(vim_refused ${WORK}/vim)
# Without a GPU (this test set's machines) --device cuda fails with the reason: a host-only
# build has no CUDA path; a CUDA build hands the run to mixlens-eval-cuda, which finds no device.
expect(cuda_without_gpu 1 "--device cuda: " --model ${demo} --tokens-file ${tokens} --device cuda --out ${WORK}/cuda)
expect_nothing(cuda_without_gpu ${WORK}/cuda)
expect(bad_device 2 "--device must be cpu or cuda, not 'tpu'" --model ${demo} --tokens-file ${tokens} --device tpu --out ${WORK}/tpu)
expect(without_d 0 "\\| attn-grad \\|" --model ${demo} --tokens-file ${tokens} --methods attn-grad --steps 2
  --attn-grad-without-d --out ${WORK}/without_d)
expect(without_d_needs_attn_grad 2 "--attn-grad-without-d is for the method attn-grad"
  --model ${demo} --tokens-file ${tokens} --methods raw --attn-grad-without-d --out ${WORK}/nd)
expect(tf32_on_cpu 2 "--tf32 is for --device cuda" --model ${demo} --tokens-file ${tokens} --tf32 --out ${WORK}/tf)
expect(zero_batch_tokens 2 "--batch-tokens: expected at least 1" --model ${demo} --tokens-file ${tokens} --batch-tokens 0 --out ${WORK}/bt)
file(MAKE_DIRECTORY ${WORK}/foreign)
file(WRITE ${WORK}/foreign/notes.txt "mine\n")
expect(foreign_folder 1 "not a former mixlens-eval output" --model ${demo} --tokens-file ${tokens} --out ${WORK}/foreign)

if(failures GREATER 0)
  message(FATAL_ERROR "mixlens_eval_test: ${failures} failure(s)")
endif()
