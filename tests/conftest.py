"""Imports every test process makes once, before any test runs.

pandas registers its Arrow extension types (pandas.period, pandas.interval) with pyarrow when
pandas.core.arrays.arrow.extension_types is first imported, which reading a parquet file does.
pytester restores sys.modules after each of its tests: if that import first happened inside
one, the module is dropped, the next read_parquet imports it again and pyarrow refuses the
second registration (ArrowKeyError: A type extension with name pandas.period already
defined), failing whichever test read a report next in that worker.
"""

import pandas.core.arrays.arrow.extension_types  # noqa: F401
