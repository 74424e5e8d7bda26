// main.cc - hilbench benchmark firmware: the hb_model.h interface on top of TensorFlow Lite Micro.
//
// The serial protocol lives in hb_protocol.c (plain C, no TFLM); the board in port.c. This file is
// the only one that includes TFLM headers. Define HB_NO_MAIN to call hb_benchmark_main() from your
// own entry point (app_main on ESP-IDF, a Zephyr thread, Arduino setup()). With HB_PROFILE 1
// (`hil build --op-profiler`) TFLM's MicroProfilerInterface feeds the per-operator recorder
// (hb_profile.c) behind the protocol's hb-profile% command.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <new>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

#ifndef TFLITE_SCHEMA_VERSION  // not every TFLM tree's schema_generated.h defines it
#define TFLITE_SCHEMA_VERSION 3
#endif

#include "hb_config.h"
#include "hb_model.h"
#include "hb_protocol.h"
#include "model_data.h"
#include "model_settings.h"
#include "op_resolver.h"

#ifndef HB_PROFILE
#define HB_PROFILE 0
#endif
#if HB_PROFILE
#include "hb_profile.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#endif

namespace {

// The tensor arena: size measured by `hil build` with the TFLM interpreter, plus the profile margin.
alignas(16) uint8_t g_tensor_arena[HB_TENSOR_ARENA_SIZE];

// Static storage instead of function-local statics: no guard variables, no heap.
alignas(HbOpResolver) uint8_t g_resolver_storage[sizeof(HbOpResolver)];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];
tflite::MicroInterpreter* g_interpreter = nullptr;

#if HB_PROFILE
// The MicroInterpreter calls BeginEvent/EndEvent around every operator it invokes, tagged with the
// op's name ("CONV_2D"); the recorder keeps them only while the protocol layer has armed it.
class HbOpProfiler : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override { return hb_profile_begin(tag); }
  void EndEvent(uint32_t event_handle) override { hb_profile_end(event_handle); }
  void operator delete(void*) {}  // lives in static storage: no heap, no operator delete linked in
};
alignas(HbOpProfiler) uint8_t g_profiler_storage[sizeof(HbOpProfiler)];
#endif

size_t g_input_bytes = 0;
size_t g_output_count = 0;

size_t ElementCount(const TfLiteTensor* t) {
  size_t n = 1;
  for (int i = 0; i < t->dims->size; ++i) n *= static_cast<size_t>(t->dims->data[i]);
  return n;
}

float Dequantize(const TfLiteTensor* t, size_t i) {
  const float scale = t->params.scale;
  const int zero_point = t->params.zero_point;
  float q;
  switch (t->type) {
    case kTfLiteFloat32:
      return t->data.f[i];
    case kTfLiteInt8:
      q = static_cast<float>(t->data.int8[i] - zero_point);
      break;
    case kTfLiteUInt8:
      q = static_cast<float>(static_cast<int>(t->data.uint8[i]) - zero_point);
      break;
    case kTfLiteInt16:
      q = static_cast<float>(t->data.i16[i] - zero_point);
      break;
    case kTfLiteInt32:
      q = static_cast<float>(t->data.i32[i] - zero_point);
      break;
    default:
      return 0.0f;
  }
  return scale != 0.0f ? q * scale : q;
}

}  // namespace

extern "C" int hb_model_init(void) {
  const tflite::Model* model = tflite::GetModel(g_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) return 1;
  HbOpResolver* resolver = new (g_resolver_storage) HbOpResolver();
  if (hb_register_ops(*resolver) != kTfLiteOk) return 2;
#if HB_PROFILE
  g_interpreter = new (g_interpreter_storage) tflite::MicroInterpreter(
      model, *resolver, g_tensor_arena, HB_TENSOR_ARENA_SIZE, nullptr, new (g_profiler_storage) HbOpProfiler());
#else
  g_interpreter = new (g_interpreter_storage)
      tflite::MicroInterpreter(model, *resolver, g_tensor_arena, HB_TENSOR_ARENA_SIZE);
#endif
  if (g_interpreter->AllocateTensors() != kTfLiteOk) {
    g_interpreter = nullptr;
    return 3;
  }
  g_input_bytes = 0;
  for (size_t i = 0; i < g_interpreter->inputs_size(); ++i) {
    g_input_bytes += g_interpreter->input(i)->bytes;
  }
  g_output_count = ElementCount(g_interpreter->output(0));  // m-results reports output 0
  if (g_input_bytes != HB_INPUT_BYTES) return 4;
  return 0;
}

extern "C" const char* hb_model_id(void) { return g_model_id; }

extern "C" size_t hb_model_input_bytes(void) { return g_input_bytes; }

extern "C" int hb_model_load_input(const uint8_t* data, size_t len) {
  if (g_interpreter == nullptr || len != g_input_bytes) return 1;
  size_t offset = 0;
  for (size_t i = 0; i < g_interpreter->inputs_size(); ++i) {
    TfLiteTensor* t = g_interpreter->input(i);
    memcpy(t->data.raw, data + offset, t->bytes);
    offset += t->bytes;
  }
  return 0;
}

extern "C" int hb_model_invoke(void) {
  if (g_interpreter == nullptr) return 1;
  return g_interpreter->Invoke() == kTfLiteOk ? 0 : 1;
}

extern "C" size_t hb_model_output_count(void) { return g_output_count; }

extern "C" float hb_model_output(size_t index) {
  if (g_interpreter == nullptr || index >= g_output_count) return 0.0f;
  return Dequantize(g_interpreter->output(0), index);
}

extern "C" int hb_model_input_quant(float* scale, int32_t* zero_point) {
  if (g_interpreter == nullptr) return 1;
  const TfLiteTensor* t = g_interpreter->input(0);
  if (t->type != kTfLiteInt8 || t->params.scale == 0.0f) return 1;
  *scale = t->params.scale;
  *zero_point = t->params.zero_point;
  return 0;
}

extern "C" int hb_model_arena(size_t* used_bytes, size_t* size_bytes) {
  if (g_interpreter == nullptr) return 1;
  *used_bytes = g_interpreter->arena_used_bytes();
  *size_bytes = HB_TENSOR_ARENA_SIZE;
  return 0;
}

#ifndef HB_NO_MAIN
int main(void) {
  tflite::InitializeTarget();
  hb_benchmark_main();  // never returns
  return 0;
}
#endif
