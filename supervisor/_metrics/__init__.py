"""_metrics"""
