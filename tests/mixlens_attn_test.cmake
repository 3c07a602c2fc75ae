# Runs mixlens-attn on the bundled checkpoints and on bad inputs.
#   cmake -DTOOL=<mixlens-attn> -DSET_NAN=<mixlens-test-set-nan> -DDATA=<tests/data> -DWORK=<scratch dir>
#         -P mixlens_attn_test.cmake
# Numerical agreement with transformers is checked by the tool itself
# (--reference-logits, --self-test), so a pass means the logits and the
# per-layer reconstruction were reproduced.
cmake_minimum_required(VERSION 3.25)
foreach(var TOOL SET_NAN DATA WORK)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "mixlens_attn_test: -D${var}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK})
set(failures 0)

set(EXPECT_TIMEOUT 120)
include(${CMAKE_CURRENT_LIST_DIR}/cli_expect.cmake)

function(expect_no_files name dir)
  foreach(f ${ARGN})
    if(EXISTS ${dir}/${f})
      message(SEND_ERROR "${name}: ${dir}/${f} should not exist")
      math(EXPR failures "${failures} + 1")
    endif()
  endforeach()
  set(failures ${failures} PARENT_SCOPE)
endfunction()

# The .npy header holds the shape as text: check it.
function(expect_shape name file shape)
  file(READ ${file} header LIMIT 128)
  string(FIND "${header}" "'shape': (${shape})" at)
  if(at LESS 0)
    message(SEND_ERROR "${name}: ${file} does not have shape (${shape}): ${header}")
    math(EXPR failures "${failures} + 1")
  endif()
  set(failures ${failures} PARENT_SCOPE)
endfunction()

set(ref ${DATA}/reference)

# ---- the fixtures: logits and reconstruction reproduced --------------------------
expect(tied_paper 0 "self-test passed.*max relative error vs reference"
  --model ${DATA}/mamba_tied_fp32 --tokens-file ${ref}/mamba_tied_fp32/tokens_2.npy --out ${WORK}/tied
  --self-test --reference-logits ${ref}/mamba_tied_fp32/logits_2.npy)
expect_files(tied_paper ${WORK}/tied logits.npy alpha_0.npy alpha_1.npy raw.npy rollout.npy alpha_0.png alpha_1.png rollout.png)
expect_shape(tied_paper ${WORK}/tied/alpha_1.npy "48, 37, 37, ")
expect_shape(tied_paper ${WORK}/tied/logits.npy "37, 97, ")
expect_shape(tied_paper ${WORK}/tied/rollout.npy "37, 37, ")

expect(bias_unified 0 "self-test passed.*max relative error vs reference"
  --model ${DATA}/mamba_bias_bf16 --tokens-file ${ref}/mamba_bias_bf16/tokens_1.npy --out ${WORK}/bias
  --form unified --layers 2,0 --no-png --self-test --reference-logits ${ref}/mamba_bias_bf16/logits_1.npy)
expect_files(bias_unified ${WORK}/bias logits.npy alpha_0.npy alpha_2.npy raw.npy rollout.npy)
expect_no_files(bias_unified ${WORK}/bias alpha_1.npy alpha_0.png rollout.png)
expect_shape(bias_unified ${WORK}/bias/alpha_2.npy "120, 23, 23, ")

expect(state_spaces 0 "state-spaces layout.*self-test passed.*\\(ok\\)"
  --model ${DATA}/mamba_ss_f16 --tokens-file ${ref}/mamba_ss_f16/tokens_0.npy --out ${WORK}/ss
  --self-test --reference-logits ${ref}/mamba_ss_f16/logits_0.npy)

expect(demo 0 "\\(ok\\)"
  --model ${DATA}/mamba_demo --tokens-file ${ref}/mamba_demo/tokens_0.npy --out ${WORK}/demo
  --reference-logits ${ref}/mamba_demo/logits_0.npy)
expect_files(demo ${WORK}/demo logits.npy alpha_3.npy rollout.png)

# ---- the other families: Mamba-2 (per-head maps) and Falcon-Mamba, sharded too ----
expect(mamba2_paper 0 "\\(Mamba-2, Hugging Face layout\\).*6 heads x 12, 2 group.*self-test passed.*\\(ok\\)"
  --model ${DATA}/mamba2_groups_bf16 --tokens-file ${ref}/mamba2_groups_bf16/tokens_1.npy --out ${WORK}/m2
  --self-test --reference-logits ${ref}/mamba2_groups_bf16/logits_1.npy)
expect_files(mamba2_paper ${WORK}/m2 logits.npy alpha_0.npy alpha_2.npy raw.npy rollout.npy alpha_1.png rollout.png)
expect_shape(mamba2_paper ${WORK}/m2/alpha_2.npy "6, 19, 19, ")
expect_shape(mamba2_paper ${WORK}/m2/logits.npy "19, 101, ")

expect(mamba2_unified 0 "self-test passed.*\\(ok\\)"
  --model ${DATA}/mamba2_groups_bf16 --tokens-file ${ref}/mamba2_groups_bf16/tokens_1.npy --out ${WORK}/m2u
  --form unified --layers 1 --no-png --self-test --reference-logits ${ref}/mamba2_groups_bf16/logits_1.npy)
expect_shape(mamba2_unified ${WORK}/m2u/alpha_1.npy "72, 19, 19, ")
expect_no_files(mamba2_unified ${WORK}/m2u alpha_0.npy alpha_1.png)

expect(mamba2_sharded 0 "\\(Mamba-2, Hugging Face layout\\).*self-test passed.*\\(ok\\)"
  --model ${DATA}/mamba2_sharded --tokens-file ${ref}/mamba2_sharded/tokens_0.npy --out ${WORK}/m2s
  --save-alpha none --self-test --reference-logits ${ref}/mamba2_sharded/logits_0.npy)

expect(mamba2_state_spaces 0 "\\(Mamba-2, state-spaces layout\\).*d_mlp 16.*self-test passed.*\\(ok\\)"
  --model ${DATA}/mamba2_ss_mlp --tokens-file ${ref}/mamba2_ss_mlp/tokens_0.npy --out ${WORK}/m2ss
  --form unified --self-test --reference-logits ${ref}/mamba2_ss_mlp/logits_0.npy)
expect_shape(mamba2_state_spaces ${WORK}/m2ss/alpha_0.npy "32, 14, 14, ")

expect(falcon_mamba 0 "\\(Falcon-Mamba, Hugging Face layout\\).*self-test passed.*\\(ok\\)"
  --model ${DATA}/falcon_mamba_fp32 --tokens-file ${ref}/falcon_mamba_fp32/tokens_1.npy --out ${WORK}/fm
  --self-test --reference-logits ${ref}/falcon_mamba_fp32/logits_1.npy)
expect_shape(falcon_mamba ${WORK}/fm/alpha_1.npy "40, 13, 13, ")

expect(falcon_mamba_sharded 0 "\\(Falcon-Mamba, Hugging Face layout\\).*self-test passed.*\\(ok\\)"
  --model ${DATA}/falcon_mamba_sharded_bf16 --tokens-file ${ref}/falcon_mamba_sharded_bf16/tokens_0.npy
  --out ${WORK}/fms --form unified --self-test --reference-logits ${ref}/falcon_mamba_sharded_bf16/logits_0.npy)

# Unsupported families and checkpoints: exit 1, naming what is not supported.
file(MAKE_DIRECTORY ${WORK}/jamba)
file(WRITE ${WORK}/jamba/config.json "{\"model_type\": \"jamba\", \"hidden_size\": 8}")
expect(unknown_family 1 "model_type = \"jamba\" is not supported" --model ${WORK}/jamba --tokens 1 --out ${WORK}/x)
file(MAKE_DIRECTORY ${WORK}/hybrid)
file(WRITE ${WORK}/hybrid/config.json
  "{\"d_model\": 8, \"n_layer\": 1, \"vocab_size\": 5, \"attn_layer_idx\": [0], \"ssm_cfg\": {\"layer\": \"Mamba2\", \"headdim\": 4}}")
expect(hybrid 1 "attn_layer_idx = \\[0\\] \\(attention layers\\) is not supported" --model ${WORK}/hybrid --tokens 1 --out ${WORK}/x)
file(MAKE_DIRECTORY ${WORK}/pickle)
file(COPY ${DATA}/mamba2_tied_fp32/config.json DESTINATION ${WORK}/pickle)
file(WRITE ${WORK}/pickle/pytorch_model.bin "not read")
expect(pickle 1 "PyTorch pickle checkpoint \\(pytorch_model.bin\\).*safe_serialization=True"
  --model ${WORK}/pickle --tokens 1 --out ${WORK}/x)
file(MAKE_DIRECTORY ${WORK}/lost_shard)
file(COPY ${DATA}/mamba2_sharded/config.json ${DATA}/mamba2_sharded/model.safetensors.index.json DESTINATION ${WORK}/lost_shard)
expect(lost_shard 1 "model.safetensors.index.json' at byte [0-9]+: shard 'model-00001-of-00005.safetensors' .* does not exist"
  --model ${WORK}/lost_shard --tokens 1 --out ${WORK}/x)

expect(token_list 0 "L = 3 tokens"
  --model ${DATA}/mamba_tied_fp32 --tokens 3,17,5 --out ${WORK}/list --layers 1 --device cpu)

# ---- token strings: tokens.json from the model folder's tokenizer.json or --tokenizer ----
expect(tokens_json 0 "tokens.json" --model ${DATA}/mamba_demo --tokens 72,105,33,32,10,0,226 --out ${WORK}/tok
  --layers 0 --method grad-input)
expect_files(tokens_json ${WORK}/tok tokens.json alpha_0.png rollout.png attribution.png)
file(READ ${WORK}/tok/tokens.json tokens_json)
set(want_tokens "[\n {\"id\": 72, \"text\": \"H\"},\n {\"id\": 105, \"text\": \"i\"},\n {\"id\": 33, \"text\": \"!\"},\n"
  " {\"id\": 32, \"text\": \" \"},\n {\"id\": 10, \"text\": \"\\n\"},\n {\"id\": 0, \"text\": \"\\u0000\"},\n"
  " {\"id\": 226, \"text\": \"�\"}\n]\n")
string(REPLACE ";" "" want_tokens "${want_tokens}")
if(NOT tokens_json STREQUAL want_tokens)
  message(SEND_ERROR "tokens_json: tokens.json is\n${tokens_json}\nexpected\n${want_tokens}")
  math(EXPR failures "${failures} + 1")
endif()
expect(no_tokenizer 0 "L = 3 tokens" --model ${DATA}/mamba_tied_fp32 --tokens 3,17,5 --out ${WORK}/notok --no-png)
expect_no_files(no_tokenizer ${WORK}/notok tokens.json)
# --tokenizer: a Unigram vocabulary with Metaspace and an added token; an id without
# an entry is shown as <id N>, with a warning.
file(WRITE ${WORK}/unigram.json "{\"added_tokens\": [{\"id\": 0, \"content\": \"<s>\", \"special\": true}],
  \"model\": {\"type\": \"Unigram\", \"vocab\": [[\"<s>\", 0.0], [\"\\u2581the\", -1.5], [\"\\u00e9t\\u00e9\", -2.0]]},
  \"decoder\": {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\"}}")
expect(tokenizer_option 0 "warning: 1 token id\\(s\\) have no entry in tokenizer file .*unigram.json"
  --model ${DATA}/mamba_tied_fp32 --tokens 0,1,2,5 --out ${WORK}/unigram --tokenizer ${WORK}/unigram.json --no-png)
file(READ ${WORK}/unigram/tokens.json tokens_json)
if(NOT tokens_json MATCHES "\"text\": \"<s>\".*\"text\": \" the\".*\"text\": \"été\".*\"id\": 5, \"text\": \"<id 5>\"")
  message(SEND_ERROR "tokenizer_option: tokens.json is\n${tokens_json}")
  math(EXPR failures "${failures} + 1")
endif()
expect(tokenizer_missing 1 "--tokenizer: cannot open tokenizer file '[^']*none.json': no such file"
  --model ${DATA}/mamba_demo --tokens 1,2 --out ${WORK}/x --tokenizer ${WORK}/none.json)
file(WRITE ${WORK}/bad_vocab.json "{\"model\": {\"type\": \"BPE\", \"vocab\": 3}}")
expect(tokenizer_bad_vocab 1 "tokenizer file '[^']*bad_vocab.json': field 'model.vocab': expected an object of token → id .*got number"
  --model ${DATA}/mamba_demo --tokens 1,2 --out ${WORK}/x --tokenizer ${WORK}/bad_vocab.json)
file(WRITE ${WORK}/bad_id.json "{\"model\": {\"vocab\": {\"a\": 0, \"b\": \"one\"}}}")
expect(tokenizer_bad_id 1 "field 'model.vocab\\[\"b\"\\]': expected a whole number id, got string"
  --model ${DATA}/mamba_demo --tokens 1,2 --out ${WORK}/x --tokenizer ${WORK}/bad_id.json)
file(WRITE ${WORK}/no_model.json "{\"version\": \"1.0\"}")
expect(tokenizer_no_model 1 "field 'model': missing"
  --model ${DATA}/mamba_demo --tokens 1,2 --out ${WORK}/x --tokenizer ${WORK}/no_model.json)
file(WRITE ${WORK}/bad_added.json "{\"model\": {\"vocab\": {}}, \"added_tokens\": [{\"id\": 3}]}")
expect(tokenizer_bad_added 1 "field 'added_tokens\\[0\\].content': missing"
  --model ${DATA}/mamba_demo --tokens 1,2 --out ${WORK}/x --tokenizer ${WORK}/bad_added.json)
# The model folder's own tokenizer.json, malformed: named, nothing written.
file(MAKE_DIRECTORY ${WORK}/demo_bad_tokenizer)
file(COPY ${DATA}/mamba_demo/config.json ${DATA}/mamba_demo/model.safetensors DESTINATION ${WORK}/demo_bad_tokenizer)
file(WRITE ${WORK}/demo_bad_tokenizer/tokenizer.json "{\"model\": {\"vocab\": {\"a\": 0,}}}")
expect(tokenizer_malformed 1 "tokenizer file '[^']*demo_bad_tokenizer/tokenizer.json' at byte [0-9]+: malformed JSON"
  --model ${WORK}/demo_bad_tokenizer --tokens 1,2 --out ${WORK}/x)
expect(text_refused 2 "--text: mixlens-attn takes token ids, not text .*python -m mixlens --model DIR --text"
  --model ${DATA}/mamba_demo --text "Hello" --out ${WORK}/x)
expect(texts_refused 2 "--texts: .*python -m mixlens --model DIR --texts FILE"
  --model ${DATA}/mamba_demo --texts lines.txt --out ${WORK}/x)
expect(tokenizer_vim 1 "--tokenizer: the model in .* is a Vision Mamba classifier"
  --model ${DATA}/vim_mid_odd --image ${DATA}/images/rgb8.png --out ${WORK}/x --tokenizer ${DATA}/mamba_demo/tokenizer.json)
expect_no_files(tokenizer_errors ${WORK} x)

expect(wrong_reference 1 "FAILED, limit 1e-4"
  --model ${DATA}/mamba_tied_fp32 --tokens 0,0,0,0,0,0 --out ${WORK}/wrongref
  --layers 0 --no-png --reference-logits ${ref}/mamba_tied_fp32/logits_1.npy)
expect(reference_shape 1 "shape does not match"
  --model ${DATA}/mamba_tied_fp32 --tokens-file ${ref}/mamba_tied_fp32/tokens_2.npy --out ${WORK}/wrongref
  --layers 0 --no-png --reference-logits ${ref}/mamba_demo/logits_0.npy)

# ---- --method: attribution.npy and target.json for one logit ------------------------
foreach(method rollout raw grad-input mamba-attr attn-grad lrp)
  expect(method_${method} 0 "attribution.npy, target.json"
    --model ${DATA}/falcon_mamba_fp32 --tokens 5,9,2,7,1,3 --out ${WORK}/method_${method} --method ${method}
    --target-position 4 --target-token 11 --start-layer 1 --no-png --save-alpha none)
  expect_shape(method_${method} ${WORK}/method_${method}/attribution.npy "6, ")
  file(READ ${WORK}/method_${method}/target.json target)
  if(NOT target MATCHES "\"method\": \"${method}\", \"position\": 4, \"token\": 11, \"value\": -?[0-9]")
    message(SEND_ERROR "method_${method}: target.json is ${target}")
    math(EXPR failures "${failures} + 1")
  endif()
endforeach()
foreach(method grad-input mamba-attr attn-grad lrp)
  expect_files(method_${method} ${WORK}/method_${method} residual_grad_0.npy residual_grad_1.npy)
endforeach()
expect_shape(method_mamba_attr ${WORK}/method_mamba-attr/mamba_attr.npy "6, 6, ")
expect_shape(method_attn_grad ${WORK}/method_attn-grad/attn_grad.npy "6, 6, ")
expect_no_files(method_lrp ${WORK}/method_lrp mamba_attr.npy attn_grad.npy)
# attn-grad without D (the authors' matrices): another attribution of the same shape.
expect(method_attn_grad_without_d 0 "attribution.npy, target.json"
  --model ${DATA}/falcon_mamba_fp32 --tokens 5,9,2,7,1,3 --out ${WORK}/method_attn_grad_no_d --method attn-grad
  --target-position 4 --target-token 11 --start-layer 1 --no-png --save-alpha none --attn-grad-without-d)
file(SHA256 ${WORK}/method_attn-grad/attribution.npy with_d)
file(SHA256 ${WORK}/method_attn_grad_no_d/attribution.npy without_d)
if(with_d STREQUAL without_d)
  message(SEND_ERROR "method_attn_grad_without_d: the same attribution as with D")
  math(EXPR failures "${failures} + 1")
endif()
expect(without_d_needs_attn_grad 2 "--attn-grad-without-d is for --method attn-grad"
  --model m --tokens 1 --out o --method lrp --attn-grad-without-d)
expect_no_files(method_rollout ${WORK}/method_rollout residual_grad_0.npy)
# Without --no-png, attribution.png: a whole PNG (signature, IHDR with a non-empty size,
# IEND last; figure_test decodes the same writer's pixels with libpng).
expect(method_png 0 "attribution.npy" --model ${DATA}/falcon_mamba_fp32 --tokens 5,9,2,7,1,3
  --out ${WORK}/method_png --method grad-input --target-position 4 --save-alpha none)
expect_files(method_png ${WORK}/method_png attribution.png rollout.png alpha_0.png)
if(EXISTS ${WORK}/method_png/attribution.png)
  file(READ ${WORK}/method_png/attribution.png head LIMIT 24 HEX)
  file(SIZE ${WORK}/method_png/attribution.png size)
  math(EXPR tail_at "${size} - 12")
  file(READ ${WORK}/method_png/attribution.png tail OFFSET ${tail_at} HEX)
  if(NOT head MATCHES "^89504e470d0a1a0a0000000d49484452" OR head MATCHES "^.{32}00000000" OR
     head MATCHES "^.{40}00000000" OR NOT tail STREQUAL "0000000049454e44ae426082")
    message(SEND_ERROR "method_png: attribution.png is not a whole PNG: ${head} … ${tail}")
    math(EXPR failures "${failures} + 1")
  endif()
endif()
expect(method_no_png 0 "attribution.npy" --model ${DATA}/falcon_mamba_fp32 --tokens 5,9,2 --out ${WORK}/method_no_png
  --method raw --no-png --save-alpha none)
expect_no_files(method_no_png ${WORK}/method_no_png attribution.png rollout.png)
expect(method_default_target 0 "attribution.npy" --model ${DATA}/mamba_tied_fp32 --tokens 1,2,3 --out ${WORK}/method_default
  --no-png --save-alpha none)
file(READ ${WORK}/method_default/target.json target)
if(NOT target MATCHES "\"position\": 2, ")
  message(SEND_ERROR "method_default_target: the default position is not the last: ${target}")
  math(EXPR failures "${failures} + 1")
endif()
# With a tokenizer (the demo model's tokenizer.json: id b is byte b) target.json names the token.
expect(method_target_text 0 "attribution.npy" --model ${DATA}/mamba_demo --tokens 72,105 --out ${WORK}/method_text
  --method grad-input --target-token 33 --no-png --save-alpha none)
file(READ ${WORK}/method_text/target.json target)
if(NOT target MATCHES "\"token\": 33, \"value\": -?[0-9][^,]*, \"text\": \"!\"}")
  message(SEND_ERROR "method_target_text: target.json is ${target}")
  math(EXPR failures "${failures} + 1")
endif()
expect(method_unknown 2 "--method must be raw, rollout, mamba-attr, attn-grad, grad-input or lrp"
  --model m --tokens 1 --out o --method shap)
# Mamba-2 (grouped B and C, a time-step limit): every gradient method, and its bad input.
foreach(method lrp mamba-attr)
  expect(method_mamba2_${method} 0 "Mamba-2.*attribution.npy, target.json"
    --model ${DATA}/mamba2_groups_bf16 --tokens 5,9,2,7,1,3 --out ${WORK}/method_mamba2_${method} --method ${method}
    --target-position 4 --target-token 11 --start-layer 1 --no-png --save-alpha none)
  expect_shape(method_mamba2_${method} ${WORK}/method_mamba2_${method}/attribution.npy "6, ")
  expect_files(method_mamba2_${method} ${WORK}/method_mamba2_${method} residual_grad_0.npy residual_grad_2.npy)
  file(READ ${WORK}/method_mamba2_${method}/target.json target)
  if(NOT target MATCHES "\"method\": \"${method}\", \"position\": 4, \"token\": 11, \"value\": -?[0-9]")
    message(SEND_ERROR "method_mamba2_${method}: target.json is ${target}")
    math(EXPR failures "${failures} + 1")
  endif()
endforeach()
expect_shape(method_mamba2_mamba_attr ${WORK}/method_mamba2_mamba-attr/mamba_attr.npy "6, 6, ")
expect_no_files(method_mamba2_lrp ${WORK}/method_mamba2_lrp mamba_attr.npy attn_grad.npy)
expect(method_mamba2_start 1 "--start-layer 3 is not a layer in \\[0, 3\\)"
  --model ${DATA}/mamba2_groups_bf16 --tokens 1,2 --out ${WORK}/x --method attn-grad --start-layer 3)
expect(method_mamba2_token 1 "--target-token 101 is outside the vocabulary \\[0, 101\\)"
  --model ${DATA}/mamba2_groups_bf16 --tokens 1,2 --out ${WORK}/x --method lrp --target-token 101)
expect(method_mamba2_tokens 1 "token 101 at position 1 is outside the vocabulary"
  --model ${DATA}/mamba2_groups_bf16 --tokens 1,101 --out ${WORK}/x --method grad-input)
expect(method_position 1 "--target-position 3 is outside the 3 tokens"
  --model ${DATA}/mamba_tied_fp32 --tokens 1,2,3 --out ${WORK}/x --target-position 3)
expect(method_token 1 "--target-token 97 is outside the vocabulary \\[0, 97\\)"
  --model ${DATA}/mamba_tied_fp32 --tokens 1,2,3 --out ${WORK}/x --target-token 97)
expect(method_start 1 "--start-layer 9 is not a layer"
  --model ${DATA}/mamba_tied_fp32 --tokens 1,2,3 --out ${WORK}/x --method mamba-attr --start-layer 9)
expect(method_vim_position 1 "--target-position is for the language models: a Vision Mamba's target is the class logit"
  --model ${DATA}/vim_mid_odd --image ${DATA}/images/rgb8.png --out ${WORK}/x --method grad-input --target-position 4)
expect(method_vim_class 1 "--target-token 7 is outside the classes \\[0, 7\\)"
  --model ${DATA}/vim_mid_odd --image ${DATA}/images/rgb8.png --out ${WORK}/x --method lrp --target-token 7)
expect(method_vim_start 1 "--start-layer 2 is not a layer in \\[0, 2\\)"
  --model ${DATA}/vim_mid_odd --image ${DATA}/images/rgb8.png --out ${WORK}/x --method attn-grad --start-layer 2)
expect_no_files(method_errors ${WORK} x)

# Vision Mamba: the class logit read at the CLS token (position 4 of 10; the argmax of
# the stored image is class 2, tests/data/make_vim_gradient_fixtures.py).
foreach(method rollout raw grad-input mamba-attr attn-grad lrp)
  expect(vim_method_${method} 0 "attribution.npy, target.json"
    --model ${DATA}/vim_mid_odd --image ${ref}/vim_mid_odd/image.npy --out ${WORK}/vim_method_${method}
    --method ${method} --start-layer 1 --save-alpha none)
  expect_shape(vim_method_${method} ${WORK}/vim_method_${method}/attribution.npy "10, ")
  expect_files(vim_method_${method} ${WORK}/vim_method_${method} attribution.png attribution_overlay.png overlay.png)
  file(READ ${WORK}/vim_method_${method}/target.json target)
  if(NOT target MATCHES "\"method\": \"${method}\", \"position\": 4, \"token\": 2, \"value\": 0\\.59104")
    message(SEND_ERROR "vim_method_${method}: target.json is ${target}")
    math(EXPR failures "${failures} + 1")
  endif()
endforeach()
foreach(method grad-input mamba-attr attn-grad lrp)
  expect_files(vim_method_${method} ${WORK}/vim_method_${method} residual_grad_0.npy residual_grad_1.npy)
  expect_shape(vim_method_${method} ${WORK}/vim_method_${method}/residual_grad_1.npy "10, 16, ")
endforeach()
expect_shape(vim_method_mamba_attr ${WORK}/vim_method_mamba-attr/mamba_attr.npy "10, 10, ")
expect_shape(vim_method_attn_grad ${WORK}/vim_method_attn-grad/attn_grad.npy "10, 10, ")
expect_no_files(vim_method_rollout ${WORK}/vim_method_rollout residual_grad_0.npy)
# --target-token alone (a class) writes the rollout's CLS row; mean pooling reads every row.
expect(vim_method_class 0 "attribution.npy, target.json" --model ${DATA}/vim_mean_nopos
  --image ${ref}/vim_mean_nopos/image.npy --out ${WORK}/vim_method_class --target-token 1 --no-png)
file(READ ${WORK}/vim_method_class/target.json target)
if(NOT target MATCHES "\"method\": \"rollout\", \"position\": -1, \"token\": 1, ")
  message(SEND_ERROR "vim_method_class: target.json is ${target}")
  math(EXPR failures "${failures} + 1")
endif()
expect_no_files(vim_method_class ${WORK}/vim_method_class attribution_overlay.png)

# ---- Vision Mamba: an image in, the two branches combined -----------------------------
foreach(fixture vim_mid_odd:paper vim_mid_stride_bf16:unified vim_head_nodiv:paper vim_mean_nopos:unified)
  string(REPLACE ":" ";" parts ${fixture})
  list(GET parts 0 model)
  list(GET parts 1 form)
  expect(${model} 0 "Vision Mamba.*self-test passed.*max relative error vs reference .* \\(ok\\)"
    --model ${DATA}/${model} --image ${ref}/${model}/image.npy --out ${WORK}/${model} --form ${form}
    --self-test --reference-logits ${ref}/${model}/logits.npy)
endforeach()
expect_files(vim ${WORK}/vim_mid_odd logits.npy alpha_0.npy alpha_1.npy raw.npy rollout.npy cls_raw.npy
  cls_rollout.npy alpha_0.png rollout.png overlay.png)
expect_shape(vim ${WORK}/vim_mid_odd/logits.npy "7, ")
expect_shape(vim ${WORK}/vim_mid_odd/alpha_1.npy "32, 10, 10, ")
expect_shape(vim ${WORK}/vim_mid_odd/cls_rollout.npy "3, 3, ")
expect_shape(vim ${WORK}/vim_mid_stride_bf16/cls_raw.npy "4, 6, ")
# A PNG is read as pixels / 255 and normalized: the same outputs as its pixels
# in a .npy with --normalize.
set(img ${DATA}/images)
expect(vim_png 0 "ImageNet-normalized" --model ${DATA}/vim_mid_odd --image ${img}/rgb8.png --out ${WORK}/vim_png --no-png)
expect(vim_npy_normalized 0 "ImageNet-normalized" --model ${DATA}/vim_mid_odd --image ${img}/rgb8.npy --normalize
  --out ${WORK}/vim_npy --no-png)
foreach(f logits.npy alpha_0.npy rollout.npy cls_rollout.npy)
  file(SHA256 ${WORK}/vim_png/${f} a)
  file(SHA256 ${WORK}/vim_npy/${f} b)
  if(NOT a STREQUAL b)
    message(SEND_ERROR "vim_png: ${f} differs between the PNG and its .npy pixels")
    math(EXPR failures "${failures} + 1")
  endif()
endforeach()
expect(vim_tokens 1 "is a Vision Mamba classifier: give its input with --image"
  --model ${DATA}/vim_mid_odd --tokens 1,2 --out ${WORK}/x)
expect(lm_image 1 "--image: the model in .* is a Mamba language model: give --tokens"
  --model ${DATA}/mamba_tied_fp32 --image ${img}/rgb8.png --out ${WORK}/x)
expect(vim_image_size 1 "image of shape \\[12, 12, 3\\], the model takes \\[10, 14, 3\\]"
  --model ${DATA}/vim_mid_stride_bf16 --image ${img}/rgb8.png --out ${WORK}/x)
expect(vim_image_type 1 "expected a .png or .npy file"
  --model ${DATA}/vim_mid_odd --image ${DATA}/vim_mid_odd/config.json --out ${WORK}/x)
expect(vim_truncated_png 1 "truncated.png': cannot be decoded"
  --model ${DATA}/vim_mid_odd --image ${img}/truncated.png --out ${WORK}/x)
expect(vim_reference_shape 1 "shape does not match: \\(37, 97\\), expected \\(classes\\) = \\(7\\)"
  --model ${DATA}/vim_mid_odd --image ${img}/rgb8.png --out ${WORK}/x --reference-logits ${ref}/mamba_tied_fp32/logits_2.npy)
expect(image_and_tokens 2 "exactly one of --tokens, --tokens-file"
  --model ${DATA}/vim_mid_odd --image ${img}/rgb8.png --tokens 1 --out ${WORK}/x)
expect_no_files(vim_errors ${WORK} x)

# ---- one NaN weight or reference value: every check fails and says where ---------
# Copies of mamba_demo with one weight set to NaN (tests/tools/set_nan.cpp): the
# checks must not pass on NaN (a max over errors drops it).
function(nan_model name tensor index)
  file(MAKE_DIRECTORY ${WORK}/${name})
  file(COPY ${DATA}/mamba_demo/config.json DESTINATION ${WORK}/${name})
  execute_process(COMMAND ${SET_NAN} ${DATA}/mamba_demo/model.safetensors ${WORK}/${name}/model.safetensors
    ${tensor} ${index} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc STREQUAL "0")
    message(FATAL_ERROR "mixlens_attn_test: cannot write ${name}: ${err}")
  endif()
endfunction()
file(READ ${DATA}/mamba_demo/config.json demo_config)
string(JSON demo_D GET "${demo_config}" intermediate_size)
string(JSON demo_H GET "${demo_config}" hidden_size)
string(JSON demo_V GET "${demo_config}" vocab_size)
string(JSON demo_layers GET "${demo_config}" num_hidden_layers)
set(demo_tokens ${ref}/mamba_demo/tokens_0.npy)
set(demo_logits ${ref}/mamba_demo/logits_0.npy)

# The final norm: every layer reproduces its output, only the logits are NaN.
nan_model(nan_norm_f backbone.norm_f.weight 5)
expect(nan_norm_f_self_test 1 "self-test FAILED.*logits contain NaN at \\[[0-9]+\\]\\[[0-9]+\\]"
  --model ${WORK}/nan_norm_f --tokens-file ${demo_tokens} --out ${WORK}/nan_out --no-png --self-test)
expect(nan_norm_f_reference 1 "max relative error vs reference -?nan \\(FAILED: logits contain NaN at \\[[0-9]+\\]"
  --model ${WORK}/nan_norm_f --tokens-file ${demo_tokens} --out ${WORK}/nan_out --no-png
  --reference-logits ${demo_logits})

# The z half of the last layer's in_proj (row D + 5): that layer's gate, and so
# its output y, is NaN in channel 5 from position 0 on; its alpha is finite.
math(EXPR last "${demo_layers} - 1")
math(EXPR gate_row "${demo_D} + 5")
math(EXPR gate_index "${gate_row} * ${demo_H} + 7")
nan_model(nan_gate backbone.layers.${last}.mixer.in_proj.weight ${gate_index})
expect(nan_gate_self_test 1 "self-test layer ${last}: \\(alpha[^\n]*nan.*self-test layer ${last}: output y contains NaN at \\[5\\]\\[0\\].*self-test FAILED"
  --model ${WORK}/nan_gate --tokens-file ${demo_tokens} --out ${WORK}/nan_out --no-png --self-test)
expect(nan_gate_reference 1 "FAILED: logits contain NaN"
  --model ${WORK}/nan_gate --tokens-file ${demo_tokens} --out ${WORK}/nan_out --no-png
  --reference-logits ${demo_logits})

# The B rows of the last layer's x_proj (row dt_rank + 2): its alpha is NaN
# everywhere; the run stops at the raw map, naming the layer, instead of
# writing all-zero maps. (A NaN in Δ, from the x half of in_proj, is refused
# by the S6 operator already.)
string(JSON demo_R GET "${demo_config}" time_step_rank)
math(EXPR b_index "(${demo_R} + 2) * ${demo_D} + 9")
nan_model(nan_x_proj backbone.layers.${last}.mixer.x_proj.weight ${b_index})
foreach(check --self-test --reference-logits)
  set(extra ${check})
  if(check STREQUAL "--reference-logits")
    list(APPEND extra ${demo_logits})
  endif()
  expect(nan_x_proj${check} 1
    "error: layer ${last}: mixlens::analysis::raw_attention: argument 'a': expected finite values, got NaN at \\["
    --model ${WORK}/nan_x_proj --tokens-file ${demo_tokens} --out ${WORK}/nan_out --no-png ${extra})
endforeach()

# A reference with one NaN (flat index 300): refused, naming the file and where.
execute_process(COMMAND ${SET_NAN} ${demo_logits} ${WORK}/logits_nan.npy 300 RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "mixlens_attn_test: cannot write logits_nan.npy: ${err}")
endif()
math(EXPR nan_row "300 / ${demo_V}")
math(EXPR nan_col "300 % ${demo_V}")
expect(nan_reference 1 "reference logits '[^']*logits_nan.npy': expected finite values, got NaN at \\[${nan_row}\\]\\[${nan_col}\\]"
  --model ${DATA}/mamba_demo --tokens-file ${demo_tokens} --out ${WORK}/nan_out --no-png
  --reference-logits ${WORK}/logits_nan.npy)

# ---- usage errors: exit 2 --------------------------------------------------------
expect(no_model 2 "--model is required" --tokens 1 --out ${WORK}/x)
expect(no_out 2 "--out is required" --model ${DATA}/mamba_tied_fp32 --tokens 1)
expect(no_tokens 2 "exactly one of --tokens" --model ${DATA}/mamba_tied_fp32 --out ${WORK}/x)
expect(both_tokens 2 "exactly one of --tokens" --model ${DATA}/mamba_tied_fp32 --out ${WORK}/x --tokens 1
  --tokens-file ${ref}/mamba_tied_fp32/tokens_0.npy)
expect(unknown_arg 2 "unknown argument '--frobnicate'" --frobnicate)
expect(bad_form 2 "--form must be paper or unified" --model m --tokens 1 --out o --form dense)
expect(bad_device 2 "--device must be cpu or cuda" --model m --tokens 1 --out o --device tpu)
expect(missing_value 2 "--layers needs a value" --model m --tokens 1 --out o --layers)

# ---- bad inputs: exit 1 with a clear message, nothing reported written --------------
expect(missing_model 1 "does not exist" --model ${WORK}/nope --tokens 1 --out ${WORK}/x)

file(MAKE_DIRECTORY ${WORK}/no_weights)
file(COPY ${DATA}/mamba_tied_fp32/config.json DESTINATION ${WORK}/no_weights)
expect(no_weights 1 "has no model.safetensors" --model ${WORK}/no_weights --tokens 1 --out ${WORK}/x)

file(MAKE_DIRECTORY ${WORK}/bad_weights)
file(COPY ${DATA}/mamba_tied_fp32/config.json DESTINATION ${WORK}/bad_weights)
# (CMake cannot write NUL bytes: an 8-byte length of "AAAAAAAA" overruns the file.)
file(WRITE ${WORK}/bad_weights/model.safetensors "AAAAAAAA{}")
expect(bad_weights 1 "safetensors file .*model.safetensors' at byte 0: header length [0-9]+ does not fit"
  --model ${WORK}/bad_weights --tokens 1 --out ${WORK}/x)

file(MAKE_DIRECTORY ${WORK}/bad_config)
file(COPY ${DATA}/mamba_tied_fp32/model.safetensors DESTINATION ${WORK}/bad_config)
file(WRITE ${WORK}/bad_config/config.json "{\"hidden_size\": 24,\n \"vocab_size\": }")
expect(bad_config 1 "config.json' at byte [0-9]+: malformed JSON" --model ${WORK}/bad_config --tokens 1 --out ${WORK}/x)

expect(token_range 1 "token 97 at position 1 is outside the vocabulary \\[0, 97\\)"
  --model ${DATA}/mamba_tied_fp32 --tokens 3,97 --out ${WORK}/range)
expect_no_files(token_range ${WORK}/range logits.npy alpha_0.npy)
expect(token_text 1 "'x' is not an integer" --model ${DATA}/mamba_tied_fp32 --tokens 3,x --out ${WORK}/x)
expect(token_float_file 1 "expected int32 or int64"
  --model ${DATA}/mamba_tied_fp32 --tokens-file ${ref}/mamba_tied_fp32/logits_0.npy --out ${WORK}/x)
expect(token_missing_file 1 "npy|cannot open"
  --model ${DATA}/mamba_tied_fp32 --tokens-file ${WORK}/none.npy --out ${WORK}/x)
expect(layer_range 1 "layer 5 is outside \\[0, 2\\)" --model ${DATA}/mamba_tied_fp32 --tokens 1 --out ${WORK}/x --layers 0,5)
expect(save_alpha_layer 1 "--save-alpha: layer 1 is not among the analysed layers"
  --model ${DATA}/mamba_tied_fp32 --tokens 1 --out ${WORK}/x --layers 0 --save-alpha 1)

# ---- --save-alpha: maps without the D x L x L files --------------------------------
expect(save_alpha_none 0 "0 alpha_\\{k\\}.npy"
  --model ${DATA}/mamba_tied_fp32 --tokens 3,17,5,8 --out ${WORK}/nosave --save-alpha none)
expect_files(save_alpha_none ${WORK}/nosave logits.npy raw.npy rollout.npy alpha_0.png alpha_1.png)
expect_no_files(save_alpha_none ${WORK}/nosave alpha_0.npy alpha_1.npy)

# ---- --device cuda ---------------------------------------------------------------
if(NOT HAS_CUDA)
  expect(cuda 1 "built without CUDA" --model ${DATA}/mamba_tied_fp32 --tokens 1 --out ${WORK}/x --device cuda)
else()
  # A CUDA build: the GPU path where a device is present (the same checks as the
  # CPU cases above), a clear refusal where none is.
  execute_process(COMMAND ${TOOL} --model ${DATA}/mamba_bias_bf16 --tokens-file ${ref}/mamba_bias_bf16/tokens_1.npy
    --out ${WORK}/cuda --device cuda --form unified --layers 0,2 --save-alpha 2 --self-test
    --reference-logits ${ref}/mamba_bias_bf16/logits_1.npy
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc STREQUAL "0")
    if(NOT out MATCHES "device cuda.*self-test passed.*\\(ok\\)")
      message(SEND_ERROR "cuda: output lacks the checks\n${out}${err}")
      math(EXPR failures "${failures} + 1")
    else()
      message(STATUS "ok   cuda (GPU path)")
    endif()
    expect_files(cuda ${WORK}/cuda logits.npy alpha_2.npy raw.npy rollout.npy alpha_0.png alpha_2.png rollout.png)
    expect_no_files(cuda ${WORK}/cuda alpha_0.npy)
    expect_shape(cuda ${WORK}/cuda/alpha_2.npy "120, 23, 23, ")
  elseif(rc STREQUAL "1" AND err MATCHES "--device cuda: no (usable )?CUDA device")
    message(STATUS "ok   cuda (no device here: ${err})")
  else()
    message(SEND_ERROR "cuda: exit ${rc}\n${out}${err}")
    math(EXPR failures "${failures} + 1")
  endif()
  # The other families on the device: the same checks, or the same refusal.
  foreach(family mamba2_groups_bf16:1 mamba2_ss_mlp:0 falcon_mamba_sharded_bf16:0)
    string(REPLACE ":" ";" parts ${family})
    list(GET parts 0 model)
    list(GET parts 1 seq)
    foreach(form paper unified)
      execute_process(COMMAND ${TOOL} --model ${DATA}/${model} --tokens-file ${ref}/${model}/tokens_${seq}.npy
        --out ${WORK}/cuda_${model} --device cuda --form ${form} --no-png --self-test
        --reference-logits ${ref}/${model}/logits_${seq}.npy
        RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
      if(rc STREQUAL "0" AND out MATCHES "device cuda.*self-test passed.*\\(ok\\)")
        message(STATUS "ok   cuda ${model} ${form} (GPU path)")
      elseif(rc STREQUAL "1" AND err MATCHES "--device cuda: no (usable )?CUDA device")
        message(STATUS "ok   cuda ${model} ${form} (no device here)")
      else()
        message(SEND_ERROR "cuda ${model} ${form}: exit ${rc}\n${out}${err}")
        math(EXPR failures "${failures} + 1")
      endif()
    endforeach()
  endforeach()
  # Vision Mamba on the device: the same checks, or the same refusal.
  foreach(form paper unified)
    execute_process(COMMAND ${TOOL} --model ${DATA}/vim_mid_stride_bf16 --image ${ref}/vim_mid_stride_bf16/image.npy
      --out ${WORK}/cuda_vim --device cuda --form ${form} --self-test
      --reference-logits ${ref}/vim_mid_stride_bf16/logits.npy
      RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(rc STREQUAL "0" AND out MATCHES "device cuda.*self-test passed.*\\(ok\\)")
      message(STATUS "ok   cuda vim ${form} (GPU path)")
      expect_files(cuda_vim ${WORK}/cuda_vim cls_rollout.npy overlay.png alpha_1.npy)
    elseif(rc STREQUAL "1" AND err MATCHES "--device cuda: no (usable )?CUDA device")
      message(STATUS "ok   cuda vim ${form} (no device here)")
    else()
      message(SEND_ERROR "cuda vim ${form}: exit ${rc}\n${out}${err}")
      math(EXPR failures "${failures} + 1")
    endif()
  endforeach()
endif()

file(WRITE ${WORK}/a_file "not a folder")
expect(unwritable_out 1 "output folder .* cannot be created" --model ${DATA}/mamba_tied_fp32 --tokens 1 --out ${WORK}/a_file/sub)

# ---- hardening: inputs checked before any output; output that cannot lie ------------
set(tied ${DATA}/mamba_tied_fp32)
set(tied_tokens ${ref}/mamba_tied_fp32/tokens_2.npy)

# A rerun with fewer layers left the earlier run's alpha_1.npy beside the new results.
expect(rerun_all 0 "2 alpha_\\{k\\}.npy" --model ${tied} --tokens 3,17,5 --out ${WORK}/rerun --no-png)
expect_files(rerun_all ${WORK}/rerun alpha_0.npy alpha_1.npy mixlens-attn.manifest)
expect(rerun_fewer 0 "1 alpha_\\{k\\}.npy" --model ${tied} --tokens 3,17,5 --out ${WORK}/rerun --no-png --layers 0)
expect_files(rerun_fewer ${WORK}/rerun alpha_0.npy logits.npy)
expect_no_files(rerun_fewer ${WORK}/rerun alpha_1.npy)

# A failure in a later layer left the earlier layers' files; now nothing is
# written, and a former output at that path is kept as it was.
expect(later_layer_fails 1 "error: layer ${last}: .*raw_attention"
  --model ${WORK}/nan_x_proj --tokens-file ${demo_tokens} --out ${WORK}/failed --no-png)
expect_no_files(later_layer_fails ${WORK} failed)
expect(later_layer_fails_keeps 1 "error: layer ${last}: .*raw_attention"
  --model ${WORK}/nan_x_proj --tokens-file ${demo_tokens} --out ${WORK}/rerun --no-png)
expect_files(later_layer_fails_keeps ${WORK}/rerun alpha_0.npy logits.npy)
file(GLOB staging LIST_DIRECTORIES true ${WORK}/.*.partial-*)
if(staging)
  message(SEND_ERROR "staging folders left behind: ${staging}")
  math(EXPR failures "${failures} + 1")
endif()

# --reference-logits was read only after every output was written.
expect(reference_missing 1 "cannot open npy file .*none.npy"
  --model ${tied} --tokens-file ${tied_tokens} --out ${WORK}/refcheck --reference-logits ${WORK}/none.npy)
expect(reference_dtype 1 "reference logits .*tokens_2.npy': dtype <i8, expected float32 or float64"
  --model ${tied} --tokens-file ${tied_tokens} --out ${WORK}/refcheck --reference-logits ${tied_tokens})
expect(reference_shape_expected 1 "shape does not match: \\(48, 256\\), expected \\(L, V\\) = \\(37, 97\\)"
  --model ${tied} --tokens-file ${tied_tokens} --out ${WORK}/refcheck --reference-logits ${demo_logits})
expect_no_files(reference_checked_first ${WORK} refcheck)

# Never remove what mixlens-attn did not write: a folder of other files is refused.
file(MAKE_DIRECTORY ${WORK}/user)
file(WRITE ${WORK}/user/notes.txt "mine")
expect(user_folder 1 "output folder .*user' is not empty and holds no mixlens-attn.manifest"
  --model ${tied} --tokens 1 --out ${WORK}/user)
expect_files(user_folder ${WORK}/user notes.txt)
file(WRITE ${WORK}/rerun/notes.txt "mine")
expect(user_file_in_output 1 "holds 'notes.txt', which no mixlens-attn run wrote"
  --model ${tied} --tokens 1 --out ${WORK}/rerun)
expect_files(user_file_in_output ${WORK}/rerun notes.txt alpha_0.npy)
expect(out_is_a_file 1 "output folder .*a_file' exists and is not a folder" --model ${tied} --tokens 1 --out ${WORK}/a_file)

# ---- hardening: silent mismatches -------------------------------------------------
file(MAKE_DIRECTORY ${WORK}/fewer_layers)
file(READ ${tied}/config.json tied_config)
string(REPLACE "\"num_hidden_layers\": 2" "\"num_hidden_layers\": 1" fewer "${tied_config}")
file(WRITE ${WORK}/fewer_layers/config.json "${fewer}")
file(COPY ${tied}/model.safetensors DESTINATION ${WORK}/fewer_layers)
expect(fewer_layers 1 "holds 2 layers \\(backbone.layers.1.\\*\\), but the config has 1 layers"
  --model ${WORK}/fewer_layers --tokens 1 --out ${WORK}/x)

file(MAKE_DIRECTORY ${WORK}/extra_tensor)
file(COPY ${tied}/config.json DESTINATION ${WORK}/extra_tensor)
execute_process(COMMAND ${SET_NAN} --add ${tied}/model.safetensors ${WORK}/extra_tensor/model.safetensors extra.weight
  RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc STREQUAL "0")
  message(FATAL_ERROR "mixlens_attn_test: cannot write extra_tensor: ${err}")
endif()
expect(extra_tensor_warns 0 "warning: model.safetensors holds 1 tensor\\(s\\) the model does not use: 'extra.weight' \\(--strict refuses them\\)"
  --model ${WORK}/extra_tensor --tokens 1 --out ${WORK}/extra_out --no-png)
expect(extra_tensor_strict 1 "error: model.safetensors holds 1 tensor\\(s\\) .*'extra.weight' \\(--strict\\)"
  --model ${WORK}/extra_tensor --tokens 1 --out ${WORK}/x --strict)
expect(strict_clean 0 "L = 1 tokens" --model ${tied} --tokens 1 --out ${WORK}/strict_out --no-png --strict)

# ---- hardening: files that are not regular files ---------------------------------------
file(MAKE_DIRECTORY ${WORK}/config_dir/config.json)
file(COPY ${tied}/model.safetensors DESTINATION ${WORK}/config_dir)
expect(config_is_a_folder 1 "config.json' is not a regular file \\(it is a directory\\)"
  --model ${WORK}/config_dir --tokens 1 --out ${WORK}/x)
find_program(MKFIFO mkfifo)
if(MKFIFO)
  file(MAKE_DIRECTORY ${WORK}/fifo_weights)
  file(COPY ${tied}/config.json DESTINATION ${WORK}/fifo_weights)
  execute_process(COMMAND ${MKFIFO} ${WORK}/fifo_weights/model.safetensors)
  expect(weights_fifo 1 "model.safetensors' is not a regular file \\(it is a FIFO\\)"
    --model ${WORK}/fifo_weights --tokens 1 --out ${WORK}/x)
  file(MAKE_DIRECTORY ${WORK}/fifo_config)
  file(COPY ${tied}/model.safetensors DESTINATION ${WORK}/fifo_config)
  execute_process(COMMAND ${MKFIFO} ${WORK}/fifo_config/config.json)
  expect(config_fifo 1 "config.json' is not a regular file \\(it is a FIFO\\)"
    --model ${WORK}/fifo_config --tokens 1 --out ${WORK}/x)
endif()

# ---- --max-memory: a clear refusal before anything is allocated ----------------------
expect(max_memory_refused 1 "the run needs about .* of memory, more than the 1.02 kB of --max-memory; alpha_\\{k\\}.npy alone is D x L x L float32 = 48 x 37 x 37 x 4 B = .*--save-alpha none"
  --model ${tied} --tokens-file ${tied_tokens} --out ${WORK}/mem --max-memory 1K)
expect_no_files(max_memory_refused ${WORK} mem)
expect(max_memory_fits 0 "L = 37 tokens" --model ${tied} --tokens-file ${tied_tokens} --out ${WORK}/mem --max-memory 1.5G --no-png)
expect(max_memory_bad 2 "--max-memory: expected a positive size like 8G" --model ${tied} --tokens 1 --out ${WORK}/x --max-memory 8X)
expect(max_memory_zero 2 "--max-memory: expected a positive size" --model ${tied} --tokens 1 --out ${WORK}/x --max-memory 0)

# ---- --tokens-file B x L: one folder per sequence and the dataset means -------------
# (tests/data/tokens, made by tests/data/make_token_files.py; python/tests/test_cli.py
# compares the numbers with single-sequence runs.)
set(tok ${DATA}/tokens)
set(demo ${DATA}/mamba_demo)
expect(batch 0 "3 sequences \\(seq_0000 ... seq_0002\\) of L = 20 tokens.*3 folders seq_0000 ... seq_0002.*attribution_mean.npy, raw_mean.npy, rollout_mean.npy, sequences.json"
  --model ${demo} --tokens-file ${tok}/batch_3x20.npy --out ${WORK}/batch --layers 0,3 --save-alpha 3 --no-png)
expect_files(batch ${WORK}/batch mixlens-attn.manifest raw_mean.npy rollout_mean.npy attribution_mean.npy sequences.json)
foreach(n 0000 0001 0002)
  expect_files(batch ${WORK}/batch/seq_${n} mixlens-attn.manifest logits.npy alpha_3.npy raw.npy rollout.npy tokens.json
    attribution.npy target.json)
  expect_no_files(batch ${WORK}/batch/seq_${n} alpha_0.npy)
endforeach()
expect_shape(batch ${WORK}/batch/raw_mean.npy "20, 20, ")
expect_shape(batch ${WORK}/batch/attribution_mean.npy "20, ")
file(READ ${WORK}/batch/sequences.json listing)
if(NOT listing STREQUAL "[\n {\"folder\": \"seq_0000\", \"length\": 20},\n {\"folder\": \"seq_0001\", \"length\": 20},\n {\"folder\": \"seq_0002\", \"length\": 20}\n]\n")
  message(SEND_ERROR "batch: sequences.json is ${listing}")
  math(EXPR failures "${failures} + 1")
endif()
file(READ ${WORK}/batch/seq_0001/mixlens-attn.manifest manifest)
if(NOT manifest MATCHES "^mixlens-attn output\n" OR NOT manifest MATCHES "\nraw.npy\n")
  message(SEND_ERROR "batch: seq_0001's manifest is ${manifest}")
  math(EXPR failures "${failures} + 1")
endif()
# A (1, L) file is one sequence, written into --out itself, as a 1-D one.
expect(batch_one_row 0 "input     L = 20 tokens" --model ${demo} --tokens-file ${tok}/one_row.npy --out ${WORK}/one_row
  --layers 0 --no-png)
expect_files(batch_one_row ${WORK}/one_row raw.npy rollout.npy)
expect_no_files(batch_one_row ${WORK}/one_row seq_0000 sequences.json)
# A batch output is a former output: a one-sequence run replaces it whole (no stale seq_NNNN).
expect(batch_replaced 0 "L = 3 tokens" --model ${demo} --tokens 1,2,3 --out ${WORK}/batch --layers 0 --no-png)
expect_no_files(batch_replaced ${WORK}/batch seq_0000 seq_0002 raw_mean.npy sequences.json)
# A bad token in the last sequence: refused before any work; the former output stays as it was.
expect(batch_bad_token 1 "token file '[^']*batch_bad_token.npy' sequence 2: token 300 at position 7 is outside the vocabulary \\[0, 256\\)"
  --model ${demo} --tokens-file ${tok}/batch_bad_token.npy --out ${WORK}/batch --layers 0)
expect_files(batch_bad_token ${WORK}/batch raw.npy)
expect_no_files(batch_bad_token ${WORK}/batch seq_0000)
expect(batch_zero_rows 1 "zero_rows.npy': shape \\(0, 5\\) holds no sequence"
  --model ${demo} --tokens-file ${tok}/zero_rows.npy --out ${WORK}/x)
expect(batch_no_tokens 1 "no_tokens.npy': shape \\(3, 0\\): the sequences hold no tokens"
  --model ${demo} --tokens-file ${tok}/no_tokens.npy --out ${WORK}/x)
expect(batch_float 1 "float.npy': dtype <f4 \\(expected int32 or int64\\)"
  --model ${demo} --tokens-file ${tok}/float.npy --out ${WORK}/x)
expect(batch_three_d 1 "three_d.npy': expected a 1-D array of token ids or a B x L array of B sequences, got shape \\(2, 3, 4\\)"
  --model ${demo} --tokens-file ${tok}/three_d.npy --out ${WORK}/x)
expect(batch_ragged 1 "ragged.npy' .*unsupported dtype '\\|O': an object array \\(sequences of different lengths\\?\\)"
  --model ${demo} --tokens-file ${tok}/ragged.npy --out ${WORK}/x)
expect(batch_html 1 "--html: a page shows one sequence, and token file .* holds 3 \\(a batch\\)"
  --model ${demo} --tokens-file ${tok}/batch_3x20.npy --out ${WORK}/x --html ${WORK}/x.html)
expect(batch_reference 1 "shape does not match: \\(48, 256\\), expected \\(B, L, V\\) = \\(3, 20, 256\\)"
  --model ${demo} --tokens-file ${tok}/batch_3x20.npy --out ${WORK}/x --reference-logits ${ref}/mamba_demo/logits_0.npy)
expect_no_files(batch_errors ${WORK} x)

# ---- --rows: selected rows of every map, no L x L array ------------------------------------
expect(rows 0 "3 row\\(s\\) of 20 \\(rows.json\\); alpha_rows_\\{k\\}.npy 128 x 3 x 20 .*raw_rows.npy normalized by each layer's whole-tensor range.*map_rows_0_mean.npy, map_rows_2_mean.npy, raw_rows_mean.npy, rows.json, sequences.json"
  --model ${demo} --tokens-file ${tok}/batch_3x20.npy --out ${WORK}/rows --rows last,0,7 --layers 0,2 --save-alpha 2)
expect_files(rows ${WORK}/rows rows.json raw_rows_mean.npy map_rows_0_mean.npy map_rows_2_mean.npy sequences.json)
expect_no_files(rows ${WORK}/rows raw_mean.npy rollout_mean.npy attribution_mean.npy)
expect_files(rows ${WORK}/rows/seq_0002 rows.json raw_rows.npy map_rows_0.npy map_rows_2.npy alpha_rows_2.npy logits.npy)
expect_no_files(rows ${WORK}/rows/seq_0002 raw.npy rollout.npy rollout.png alpha_0.png alpha_rows_0.npy attribution.npy)
expect_shape(rows ${WORK}/rows/seq_0002/map_rows_0.npy "3, 20, ")
expect_shape(rows ${WORK}/rows/seq_0002/alpha_rows_2.npy "128, 3, 20, ")
file(READ ${WORK}/rows/seq_0002/rows.json rows_json)
if(NOT rows_json STREQUAL "{\"rows\": [0, 7, 19]}\n")
  message(SEND_ERROR "rows: rows.json is ${rows_json}")
  math(EXPR failures "${failures} + 1")
endif()
expect(rows_rowrange 0 "raw_rows_rowrange.npy normalized by the range of the selected rows"
  --model ${DATA}/mamba2_groups_bf16 --tokens 5,9,2,7 --out ${WORK}/rows_rr --rows 2 --raw-range rows --form unified)
expect_files(rows_rowrange ${WORK}/rows_rr raw_rows_rowrange.npy map_rows_0.npy alpha_rows_2.npy)
expect_no_files(rows_rowrange ${WORK}/rows_rr raw_rows.npy)
expect(rows_gradient 0 "attribution.npy, target.json, residual_grad"
  --model ${demo} --tokens 72,105,33 --out ${WORK}/rows_grad --rows last --method grad-input --no-png)
expect(rows_vim_cls 0 "2 row\\(s\\) of 10 .*raw_rows.npy, rows.json"
  --model ${DATA}/vim_mid_odd --image ${img}/rgb8.png --out ${WORK}/rows_vim --rows cls,0 --no-png)
expect_no_files(rows_vim ${WORK}/rows_vim cls_raw.npy cls_rollout.npy rollout.npy overlay.png)
expect(rows_out_of_range 1 "--rows: row 20 is outside the valid range \\[0, 20\\) of the 20 positions"
  --model ${demo} --tokens-file ${tok}/batch_3x20.npy --out ${WORK}/x --rows 3,20)
expect(rows_negative 1 "--rows: row -1 is outside the valid range \\[0, 3\\)"
  --model ${demo} --tokens 1,2,3 --out ${WORK}/x --rows -1)
# (An empty --rows value, which CMake cannot pass, is tested in python/tests/test_cli.py.)
expect(rows_empty_item 1 "--rows: '' is not last, cls or a row position" --model ${demo} --tokens 1,2,3 --out ${WORK}/x --rows 0,,2)
expect(rows_not_a_number 1 "--rows: 'first' is not last, cls or a row position" --model ${demo} --tokens 1,2,3 --out ${WORK}/x --rows first)
expect(rows_cls_lm 1 "--rows cls: the CLS position is Vision Mamba's; a language model has none"
  --model ${demo} --tokens 1,2,3 --out ${WORK}/x --rows cls)
expect(rows_cls_mean_pool 1 "--rows cls: this Vision Mamba model pools the sequence \\(mean\\) and has no CLS token"
  --model ${DATA}/vim_mean_nopos --image ${ref}/vim_mean_nopos/image.npy --out ${WORK}/x --rows cls)
expect(rows_method_rollout 2 "--method rollout reads a row of rollout.npy, which --rows does not write"
  --model ${demo} --tokens 1,2,3 --out ${WORK}/x --rows last --method rollout)
expect(rows_target 2 "--target-token without a gradient --method reads the target row of rollout.npy"
  --model ${demo} --tokens 1,2,3 --out ${WORK}/x --rows last --target-token 4)
expect(rows_html 2 "--html draws every layer's whole map and the rollout: not with --rows"
  --model ${demo} --tokens 1,2,3 --out ${WORK}/x --rows last --html ${WORK}/x.html)
expect(raw_range_alone 2 "--raw-range is for --rows" --model ${demo} --tokens 1,2,3 --out ${WORK}/x --raw-range rows)
expect(raw_range_bad 2 "--raw-range must be tensor or rows, not 'all'" --model ${demo} --tokens 1,2,3 --out ${WORK}/x
  --rows last --raw-range all)
expect_no_files(rows_errors ${WORK} x x.html)

if(failures GREATER 0)
  message(FATAL_ERROR "mixlens_attn_test: ${failures} failure(s)")
endif()
message(STATUS "mixlens_attn_test: all cases passed")
