/* hb_model.h - what the protocol layer needs from a model backend.
 *
 * main.cc implements it on top of TensorFlow Lite Micro; the QEMU reference target implements it
 * with a small fixed-point layer in plain C. The protocol layer never sees TFLM types.
 * Return codes: 0 = success, anything else = failure.
 */
#ifndef HB_MODEL_H
#define HB_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parse the model, register its ops, allocate the tensor arena. Called once at boot. */
int hb_model_init(void);

/* Model identifier reported as m-model-[ID] (hilbench uses a sha256 prefix of the .tflite). */
const char *hb_model_id(void);

/* Bytes the host must send with `db load`: all input tensors, in model input order, concatenated. */
size_t hb_model_input_bytes(void);

/* Copy len (== hb_model_input_bytes()) bytes into the input tensor(s). The protocol layer calls it
 * before the warm-up, before the timed loop and before the final inference whose outputs are
 * reported, because the arena planner may reuse input memory for intermediate tensors. */
int hb_model_load_input(const uint8_t *data, size_t len);

/* Run one inference. */
int hb_model_invoke(void);

/* Number of values reported in m-results-[...]: the elements of output tensor 0 (the protocol
 * reports output 0 only). */
size_t hb_model_output_count(void);

/* Value `index` of output 0 after the last inference, dequantised to a real number. */
float hb_model_output(size_t index);

/* Tensor arena bytes in use and the arena size; return non-zero when not applicable. */
int hb_model_arena(size_t *used_bytes, size_t *size_bytes);

/* Scale and zero point of input 0; return non-zero when it is not quantised. Only called with
 * HB_IO_CONVENTION HB_IO_FLOAT32_MSE, which quantises float inputs on the device. */
int hb_model_input_quant(float *scale, int32_t *zero_point);

#ifdef __cplusplus
}
#endif

#endif /* HB_MODEL_H */
