"""The helpers end-to-end tests share: a process a test starts never outlives it."""

from __future__ import annotations

import asyncio
import sys

import pytest
from shop_devstack.testing import finished


async def python(code: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE
    )


async def test_finished_returns_the_output_of_a_process_that_ends_in_time() -> None:
    process = await python("print('done')")

    stdout, stderr = await finished(process, 30)

    assert (stdout, stderr) == (b"done\n", b"")  # stderr was not piped
    assert process.returncode == 0


async def test_finished_kills_a_process_still_running_at_its_deadline_and_fails() -> None:
    process = await python("import time; time.sleep(60)")

    with pytest.raises(AssertionError, match=r"still running after 0\.5 s \(now killed\)"):
        await finished(process, 0.5)

    assert process.returncode is not None and process.returncode < 0  # ended by a signal
