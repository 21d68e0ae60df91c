#include "sbgm/optim/optimizer.h"

#include "sbgm/optim/flat_adam.h"

namespace sbgm {

TorchOptimizer::TorchOptimizer(
    std::shared_ptr<torch::optim::Optimizer> optimizer)
    : optimizer_(std::move(optimizer)) {
  TORCH_CHECK(optimizer_ != nullptr, "TorchOptimizer: the optimizer is null");
}

void TorchOptimizer::zero_grad() {
  optimizer_->zero_grad();
}

void TorchOptimizer::step() {
  optimizer_->step();
}

size_t TorchOptimizer::num_groups() const {
  return optimizer_->param_groups().size();
}

double TorchOptimizer::lr(size_t group) const {
  TORCH_CHECK(
      group < num_groups(),
      "TorchOptimizer::lr: group ",
      group,
      " out of range (the optimizer has ",
      num_groups(),
      " parameter groups)");
  return optimizer_->param_groups()[group].options().get_lr();
}

void TorchOptimizer::set_lr(size_t group, double lr) {
  TORCH_CHECK(
      group < num_groups(),
      "TorchOptimizer::set_lr: group ",
      group,
      " out of range (the optimizer has ",
      num_groups(),
      " parameter groups)");
  optimizer_->param_groups()[group].options().set_lr(lr);
}

void TorchOptimizer::save(torch::serialize::OutputArchive& archive) const {
  optimizer_->save(archive);
}

void TorchOptimizer::load(torch::serialize::InputArchive& archive) {
  optimizer_->load(archive);
}

std::shared_ptr<Optimizer> make_optimizer(
    std::shared_ptr<torch::optim::Optimizer> optimizer) {
  if (!optimizer) {
    return nullptr;
  }
  if (auto flat = std::dynamic_pointer_cast<FlatAdam>(optimizer)) {
    return std::make_shared<FlatAdamOptimizer>(std::move(flat));
  }
  return std::make_shared<TorchOptimizer>(std::move(optimizer));
}

}  // namespace sbgm
