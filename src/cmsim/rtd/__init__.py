"""Residence-time distributions: models, kernels, convolution and streaming filters.

Pure numerics: this package knows nothing of SimPy, pandas, scenario files or plotting.
Times are in seconds [s], E in [1/s], F dimensionless.
"""

from cmsim.rtd.convolution import *  # noqa: F403
from cmsim.rtd.filters import *  # noqa: F403
from cmsim.rtd.fitting import *  # noqa: F403
from cmsim.rtd.funnel import *  # noqa: F403
from cmsim.rtd.models import *  # noqa: F403
