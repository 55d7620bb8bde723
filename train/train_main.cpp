// The `train` program: train --config FILE.yaml [--set key.path=value ...] [--output-dir DIR]
// [--resume | --restart] [--print-config]; `train --version` prints the build's source revision.
// Exit status: 0 success, 2 usage/config/input error (the message names the file, key or flag), 1
// runtime failure (e.g. a non-finite loss), 130 / 143 after a clean stop on SIGINT / SIGTERM
// (checkpoint saved; rerun to resume), as a shell reports a process that a signal ended. Under
// `mpirun -np N` it trains data-parallel (train/dist.h); an error on one rank ends every rank,
// reported once, by the rank that exits with the error's status (the others exit 0).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "core/error.h"
#include "nn/model.h"
#include "train/config.h"
#include "train/dist.h"
#include "train/signals.h"
#include "train/trainer.h"
#include "train/version.h"

int main(int argc, char** argv) {
  scion::train::take_stop_signals();  // before any thread exists (train/signals.h)
  CLI::App app{"scion train: train a model from a YAML config"};
  std::string config_path, output_dir;
  std::vector<std::string> sets;
  bool resume = false, print_config = false, restart = false;
  app.set_version_flag("--version",
                       std::string("scion train, source revision ") + scion::build_revision());
  app.add_option("--config", config_path, "YAML config file")->required();
  app.add_option("--set", sets, "override a config key: key.path=value (repeatable)");
  app.add_option("--output-dir", output_dir, "output folder (overrides output_dir)");
  app.add_flag("--resume", resume,
               "continue from output_dir/last.safetensors (automatic when it exists)");
  app.add_flag("--restart", restart,
               "start afresh even if output_dir holds a run (its files are moved into "
               "output_dir/replaced-<time>/)");
  app.add_flag("--print-config", print_config,
               "check the config (and the model it builds) and print it resolved (as "
               "output_dir/config.yaml), then exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (app.count("--output-dir")) {
      if (output_dir.empty())
        throw scion::InputError("--output-dir: empty (name the folder for the run's outputs)");
      sets.push_back("output_dir=" + output_dir);
    }
    scion::train::Config cfg = scion::train::load_config(config_path, sets);
    if (print_config) {                    // warnings too (run_training prints them before a run)
      scion::nn::create_model(cfg.model);  // the model's own checks (num_heads, depths, ...)
      for (const std::string& w : scion::train::config_warnings(cfg))
        std::fprintf(stderr, "warning: %s\n", w.c_str());
      std::fputs(scion::train::to_yaml(cfg).c_str(), stdout);
      return 0;
    }
    return scion::train::run_training(cfg, {resume, restart});
  } catch (const scion::train::dist::PeerFailed&) {
    // Another rank of an mpirun job reports the error and exits with its status. This rank exits
    // 0: mpirun ends the whole job at the first non-zero exit, and a quiet rank exiting 2 first
    // could kill the reporting rank before it printed why (the job's status is the reporter's).
    return 0;
  } catch (const scion::InputError& e) {
    std::fprintf(stderr, "train: error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train: error: %s\n", e.what());
    return 1;
  }
}
