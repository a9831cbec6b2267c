"""Delivery route planning for logistics planners.

Entry point: ``cloud.routing.service.solve(problem, time_limit_s, engine, seed, progress)``.

Layout: ``problem`` (validated input), ``travel`` (integer matrices), ``compiled`` (integer
view), ``ortools_engine`` (the only OR-Tools importer, full model), ``pyvrp_engine`` (PyVRP for
the problems it supports), ``service`` (engine choice: ``auto`` runs OR-Tools briefly for a
guaranteed plan, then PyVRP, and keeps the better), ``schedule`` (timed routes from visit
sequences), ``diagnose`` (unserved reasons), ``checker`` (independent verification),
``isolation``/``worker`` (solve in a fresh process when TensorFlow was imported first),
``instances`` (VRPLIB reader), ``plot`` (GeoJSON/PNG), ``cli`` (``edgehouse routes``).
"""
