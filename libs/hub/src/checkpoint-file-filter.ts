/**
 * The files of a Hub repository the server reads: the model config, the safetensors weights and their
 * index, the tokenizer, and sentence-transformers' prompts and pooling. Everything else (README, other
 * weight formats such as *.bin, onnx/, gguf) stays on the Hub.
 */
const SERVER_FILES = [
  /^config\.json$/,
  /^[^/]+\.safetensors$/,
  /^model\.safetensors\.index\.json$/,
  /^tokenizer\.json$/,
  /^tokenizer_config\.json$/,
  /^special_tokens_map\.json$/,
  /^vocab\.json$/,
  /^merges\.txt$/,
  /^added_tokens\.json$/,
  /^generation_config\.json$/,
  /^config_sentence_transformers\.json$/,
  /^sentence_bert_config\.json$/,
  /^modules\.json$/,
  /^\d+_[A-Za-z]+\/config\.json$/,
];

export function isServerFile(path: string): boolean {
  return SERVER_FILES.some((pattern) => pattern.test(path));
}

/** Files without which the directory cannot be served (the weights are checked separately). */
export const REQUIRED_FILES = ['config.json', 'tokenizer.json'];
