// Stand-in for CUDA's cuda_bf16.h when kernels are compiled for the emulator.
#pragma once
#include "memwall_emu/half_types.h"
