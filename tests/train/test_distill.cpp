// The distillation loss against PyTorch (tests/golden/make_golden_distill.py): the loss value and
// its gradient with respect to the student's logits, for three (alpha, T, label smoothing)
// settings, computed in f32 and compared at 1e-5 (relative to the loss / the gradient's max), on
// the CPU and on the reference device (every tensor of the loss on a device other than the
// default one: a constant made on the CPU would fail there, as it did on CUDA).
#include "core/ops.h"
#include "tests/support.h"
#include "train/distill.h"

using namespace scion;

TEST_CASE("distillation loss and its gradient match PyTorch", "[train][golden]") {
  SafetensorsFile f = SafetensorsFile::open(std::string(SCION_GOLDEN_DIR) + "/distill.safetensors");
  for (Device dev : {Device{DeviceType::cpu, 0}, Device{DeviceType::reference, 0}})
    for (int i = 0; i < 3; ++i) {
      std::string k = std::to_string(i) + ".";
      INFO("device " << dev.str());
      std::vector<double> p = f.get(k + "params").to_vector();
      INFO("alpha " << p[0] << ", T " << p[1] << ", label smoothing " << p[2]);
      train::DistillConfig d;
      d.alpha = p[0];
      d.temperature = p[1];
      Tensor s = f.get(k + "student").to(DType::f32).to(dev).requires_grad_();
      Tensor t = f.get(k + "teacher").to(DType::f32).to(dev);
      Tensor task = cross_entropy(s, f.get(k + "labels").to(dev), p[2]);
      Tensor loss = train::distillation_loss(task, s, t, d);
      double ref = f.get(k + "loss").item();
      CHECK(std::fabs(loss.item() - ref) <= 1e-5 * std::fabs(ref));
      loss.backward();
      Tensor g = f.get(k + "grad");
      double scale = 0;
      for (double v : g.to_vector()) scale = std::max(scale, std::fabs(v));
      CHECK_CLOSE(s.grad().cpu().to(DType::f64), g, 1e-5 * scale, 0.0);
    }
}
