// The engine's front door: everything code outside engine/ may use (lint forbids deeper imports), so the
// engine's inside can change without its callers noticing.

// Running a policy: on an engine thread (activities) or in the calling thread (the CLI, benchmarks).
export type { EngineApi, PolicyStateFiles, RemoteEngineApi, TrainOptions } from './api.js';
export { EngineClient } from './runtime/engine-client.js';
export type { EngineSource } from './runtime/protocol.js';
export { PolicyEngine, type EngineLora, type EngineOptions } from './policy.js';
export type { GenerateOptions, GenerateRequest, GenerateResult } from './generation.js';
export type { SampleKey, SamplingOptions } from './sampling.js';
export type { ScoreOptions, ScoreRequest, ScoreResult } from './scoring.js';
export { countedTokens, trainStepOptionsOf } from './training.js';
export type { TrainSequence, TrainStep, TrainStepOptions, TrainStepResult } from './training.js';
export { EngineAbortError, EngineInputError, EngineThreadError, NonFiniteUpdateError, PolicyTagMismatchError, type PolicyTag } from './errors.js';
export { runtimeFingerprint, runtimeInfo, type RuntimeInfo } from './ort.js';
export { fingerprintDifferences, fingerprintId, type RecordedFingerprint, type RuntimeFingerprint } from './fingerprint.js';

// Models, adapters and tokenizers on disk.
export { parseModelConfig, type ModelConfig } from './model/config.js';
export { initParameters, parameterCount } from './model/params.js';
export { estimateGenerateBytes, estimateScoreBytes, estimateUpdateBytes, formatGiB, resolveMicroBatchTokens, trainedParameterCount, type MemoryEstimate } from './memory.js';
export { decodeAdapters, decodeParameters, encodeParameters } from './model/state-files.js';
export { importHuggingFaceDir, saveModelDir, WEIGHTS_FILE, writeModelDirectory, type ExportDType } from './model/model-dir.js';
export { importGgufToDir, loadModel, loadModelConfig, loadModelTokenizer, modelSideFiles } from './model/model-source.js';
export { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, adapterConfigJson, mergeAdapters } from './model/lora.js';
export { mergeAdapterToDir } from './model/adapter-dir.js';
export { ByteTokenizer } from './tokenizer/byte-tokenizer.js';
export type { ChatMessage, Tokenizer } from './tokenizer/tokenizer.js';

// For the benchmarks' machine measurements and the llama.cpp cross-check's GGUF files.
export { Graph } from './onnx/graph.js';
export { OrtSession } from './ort.js';
export { encodeGguf, GgufReader, type GgufTensorToWrite } from './weights/gguf.js';
