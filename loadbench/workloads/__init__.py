"""Workloads: WHAT is sent. Prefill, Balanced and Decode, their data, and token-length control.

```python
from loadbench.workloads import Decode, Uniform, MathDataset
w = Decode()                                   # synthetic problems, no download
w = Decode(output_tokens=Uniform(200, 1200), dataset=MathDataset(path="math_test.jsonl"))
stream = w.open(seed=0)                        # infinite, deterministic PromptStream
prompt = next(stream)
stream.observe(prompt, record)                 # after each request: calibrates lengths
```
"""

from loadbench.contract.prompt import Message, Prompt
from loadbench.workloads.base import PromptStream, Workload
from loadbench.workloads.check import accuracy, check_answer, check_finance, check_math
from loadbench.workloads.distributions import Distribution, Empirical, Fixed, LogNormal, Normal, Uniform
from loadbench.workloads.loaders import FinanceBenchDataset, MathDataset, OpenAssistantDataset
from loadbench.workloads.presets import Balanced, Decode, MultiTurn, Prefill
from loadbench.workloads.report import length_report
from loadbench.workloads.sources import ChatThread, Dataset, FinanceItem, MathProblem, Pool
from loadbench.workloads.synthetic import SyntheticChat, SyntheticFinance, SyntheticMath
from loadbench.workloads.tokens import (
    CalibratedEstimate,
    HFTokenizerFile,
    LengthModel,
    ServerTokenizer,
    TiktokenEncoding,
    TokenCounter,
    auto_counter,
)
from loadbench.workloads.trace import Trace, TracePlan, TraceReplay, TraceWorkload

__all__ = [
    "Balanced",
    "CalibratedEstimate",
    "ChatThread",
    "Dataset",
    "Decode",
    "Distribution",
    "Empirical",
    "FinanceBenchDataset",
    "FinanceItem",
    "Fixed",
    "HFTokenizerFile",
    "LengthModel",
    "LogNormal",
    "MathDataset",
    "MathProblem",
    "Message",
    "MultiTurn",
    "Normal",
    "OpenAssistantDataset",
    "Pool",
    "Prefill",
    "Prompt",
    "PromptStream",
    "ServerTokenizer",
    "SyntheticChat",
    "SyntheticFinance",
    "SyntheticMath",
    "TiktokenEncoding",
    "TokenCounter",
    "Trace",
    "TracePlan",
    "TraceReplay",
    "TraceWorkload",
    "Uniform",
    "Workload",
    "accuracy",
    "auto_counter",
    "check_answer",
    "check_finance",
    "check_math",
    "length_report",
]
