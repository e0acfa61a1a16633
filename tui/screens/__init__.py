"""One screen per area of the box, in the order of the number keys."""

from .data import DataScreen
from .experiments import ExperimentsScreen
from .features import FeaturesScreen
from .jobs import JobsScreen
from .models import ModelsScreen
from .monitoring import MonitoringScreen
from .overview import OverviewScreen
from .panels import PanelsScreen
from .plugins import PluginsScreen
from .serving import ServingScreen

SCREENS = {s.AREA: s for s in (OverviewScreen, JobsScreen, DataScreen, FeaturesScreen, ExperimentsScreen,
                               ModelsScreen, ServingScreen, MonitoringScreen, PluginsScreen, PanelsScreen)}
